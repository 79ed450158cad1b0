"""Federation transport settings: listener TLS, outbound TLS trust, old keys, retry intervals.

Synapse's names and defaults: `tls_certificate_path` / `tls_private_key_path` (needed as soon as
a listener says `tls: true`), `federation_verify_certificates` (true), `federation_custom_ca_list`,
`old_signing_keys`, and the `federation:` section's `destination_min_retry_interval` (10m),
`destination_retry_multiplier` (2), `destination_max_retry_interval` (7d), `client_timeout` (60s).
"""

from __future__ import annotations

import os

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section, join_path
from homeserver.config.sections import FederationConfig, ListenerConfig, OldSigningKey
from homeserver.crypto.keys import decode_verify_key

DEFAULT_MIN_RETRY = 10 * 60 * 1000
DEFAULT_RETRY_MULTIPLIER = 2.0
DEFAULT_MAX_RETRY = 7 * 24 * 3600 * 1000
DEFAULT_CLIENT_TIMEOUT = 60 * 1000


def _readable_file(key: str, path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"no such file: {path!r} ({what})", key)
    if not os.access(path, os.R_OK):
        raise ConfigError(f"cannot read {path!r} ({what})", key)


def _old_signing_keys(root: Section) -> tuple[OldSigningKey, ...]:
    sec = root.section("old_signing_keys")
    out: list[OldSigningKey] = []
    for key_id in sec.keys():
        entry = sec.section(key_id)
        path = sec.key_path(key_id)
        if not key_id.startswith("ed25519:") or len(key_id) <= len("ed25519:"):
            raise ConfigError("expected a key id such as ed25519:a_AbCd", path)
        key = entry.get_opt_str("key")
        if not key:
            raise ConfigError("missing: the old key's base64 verify key", join_path(path, "key"))
        expired_ts = entry.get_opt_int("expired_ts", minimum=0)
        if expired_ts is None:
            raise ConfigError(
                "missing: when the key expired, in ms since the epoch", join_path(path, "expired_ts")
            )
        try:
            decode_verify_key(key_id, key)
        except ValueError as exc:
            raise ConfigError(f"not an ed25519 verify key: {exc}", join_path(path, "key")) from exc
        out.append(OldSigningKey(key_id, key, expired_ts))
    return tuple(out)


# PDUs kept per destination before it falls back to catch-up mode (federation/sender/).
DEFAULT_MAX_QUEUED_PDUS = 1000


def read_federation_config(root: Section, listeners: tuple[ListenerConfig, ...]) -> FederationConfig:
    cert = root.get_opt_str("tls_certificate_path")
    key = root.get_opt_str("tls_private_key_path")
    tls_listeners = [lst for lst in listeners if lst.tls]
    if tls_listeners:
        if not cert:
            raise ConfigError(
                "missing: a listener has `tls: true`, so a certificate is needed", "tls_certificate_path"
            )
        if not key:
            raise ConfigError(
                "missing: a listener has `tls: true`, so a private key is needed", "tls_private_key_path"
            )
    if cert:
        _readable_file("tls_certificate_path", cert, "PEM certificate, leaf first then the chain")
    if key:
        _readable_file("tls_private_key_path", key, "PEM private key")
    cas = root.get_str_list("federation_custom_ca_list")
    for index, ca in enumerate(cas):
        _readable_file(join_path("federation_custom_ca_list", index), ca, "PEM CA certificate")
    sec = root.section("federation")
    min_retry = sec.get_duration("destination_min_retry_interval", DEFAULT_MIN_RETRY)
    max_retry = sec.get_duration("destination_max_retry_interval", DEFAULT_MAX_RETRY)
    if min_retry <= 0:
        raise sec.error("destination_min_retry_interval", "a duration greater than zero", min_retry)
    if max_retry < min_retry:
        raise sec.error(
            "destination_max_retry_interval",
            "a duration no smaller than destination_min_retry_interval",
            max_retry,
        )
    multiplier = sec.get_float("destination_retry_multiplier", DEFAULT_RETRY_MULTIPLIER, minimum=1.0)
    client_timeout = sec.get_duration("client_timeout", DEFAULT_CLIENT_TIMEOUT)
    if client_timeout <= 0:
        raise sec.error("client_timeout", "a duration greater than zero", client_timeout)
    # Synapse's other retry knobs (per-request retries of the transaction sender) are accepted.
    sec.mark_read("max_short_retry_delay", "max_long_retry_delay", "max_short_retries", "max_long_retries")
    return FederationConfig(
        tls_certificate_path=cert,
        tls_private_key_path=key,
        verify_certificates=root.get_bool("federation_verify_certificates", True),
        custom_ca_list=cas,
        old_signing_keys=_old_signing_keys(root),
        destination_min_retry_interval=min_retry,
        destination_retry_multiplier=multiplier,
        destination_max_retry_interval=max_retry,
        client_timeout=client_timeout,
        allow_profile_lookup_over_federation=root.get_bool("allow_profile_lookup_over_federation", True),
        send_federation=root.get_bool("send_federation", True),
        max_queued_pdus=sec.get_int("max_queued_pdus", DEFAULT_MAX_QUEUED_PDUS, minimum=1),
    )
