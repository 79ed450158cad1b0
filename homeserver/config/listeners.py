"""`listeners` (Synapse's shape) and the `public_baseurl` derived from them."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from homeserver.config import defaults
from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section, join_path
from homeserver.config.sections import ListenerConfig

_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def default_listener() -> ListenerConfig:
    return ListenerConfig(
        port=defaults.DEFAULT_PORT,
        bind_addresses=defaults.DEFAULT_LISTENER_BIND,
        type="http",
        tls=False,
        x_forwarded=False,
        resources=defaults.DEFAULT_LISTENER_RESOURCES,
    )


def default_listener_raw() -> dict[str, object]:
    """The embedded listener in Synapse's YAML shape (seeds env overrides of `listeners`)."""
    listener = default_listener()
    return {
        "port": listener.port,
        "bind_addresses": list(listener.bind_addresses),
        "type": listener.type,
        "tls": False,
        "x_forwarded": False,
        "resources": [{"names": list(listener.resources), "compress": False}],
    }


def read_listeners(root: Section, unsupported: list[str]) -> tuple[ListenerConfig, ...]:
    """Parse `listeners` (plus Synapse's legacy `metrics_port`); absent means the embedded default.

    Entries we cannot serve but that are harmless to skip (manhole listeners, the consent and
    static resources) are appended to `unsupported` instead of failing the whole config.
    """
    listeners: list[ListenerConfig] = []
    if not root.has("listeners"):
        listeners.append(default_listener())
    else:
        for index, sec in enumerate(root.sections("listeners")):
            listener = _read_listener(sec, unsupported)
            if listener is None:
                unsupported.append(f"{join_path('listeners', index)} (type {sec.raw('type')!r})")
            else:
                listeners.append(listener)
    metrics_port = root.get_opt_int("metrics_port", minimum=1, maximum=65535)
    metrics_host = root.get_str("metrics_bind_host", "127.0.0.1")
    if metrics_port is not None:
        listeners.append(ListenerConfig(metrics_port, (metrics_host,), "metrics", False, False, ("metrics",)))
    return tuple(listeners)


def _read_listener(sec: Section, unsupported: list[str]) -> ListenerConfig | None:
    kind = sec.get_str("type", "http")
    if kind == "manhole":
        sec.mark_read(*sec.keys())
        return None
    if kind not in defaults.LISTENER_TYPES:
        raise sec.error("type", "one of 'http', 'metrics'", kind)
    if sec.has("path"):
        raise ConfigError("UNIX socket listeners are not supported; use `port`", sec.key_path("path"))
    # As Synapse: HTTPS with tls_certificate_path / tls_private_key_path (checked in config/federation.py).
    tls = sec.get_bool("tls", False)
    if not sec.has("port"):
        raise ConfigError("missing: every listener needs a port", sec.key_path("port"))
    port = sec.get_int("port", 0, minimum=1, maximum=65535)

    bind = list(sec.get_str_list("bind_addresses"))
    legacy = sec.get_opt_str("bind_address")
    if legacy:
        bind.append(legacy)
    if not bind:
        bind = list(
            defaults.SYNAPSE_METRICS_BIND_ADDRESSES if kind == "metrics" else defaults.SYNAPSE_BIND_ADDRESSES
        )

    x_forwarded = sec.get_bool("x_forwarded", False)
    trusted = _read_trusted_proxies(sec)
    sec.mark_read("tag", "request_id_header")  # log labels only
    if kind == "metrics":
        return ListenerConfig(port, tuple(bind), kind, tls, x_forwarded, ("metrics",), trusted)

    names: list[str] = []
    for res in sec.sections("resources"):
        res.get_bool("compress", False)  # accepted; compression is the proxy's job
        for position, name in enumerate(res.get_str_list("names")):
            if name in defaults.UNSUPPORTED_RESOURCES:
                unsupported.append(f"{join_path(res.key_path('names'), position)} ({name})")
            elif name not in defaults.KNOWN_RESOURCES:
                raise ConfigError(
                    f"unknown resource {name!r}; expected some of "
                    + ", ".join(sorted(defaults.KNOWN_RESOURCES)),
                    join_path(res.key_path("names"), position),
                )
            elif name not in names:
                names.append(name)
    return ListenerConfig(port, tuple(bind), kind, tls, x_forwarded, tuple(names), trusted)


def _read_trusted_proxies(sec: Section) -> tuple[str, ...]:
    """`trusted_proxies`: CIDRs (or single addresses) of proxies in front of the one we see."""
    networks: list[str] = []
    for position, value in enumerate(sec.get_str_list("trusted_proxies")):
        try:
            networks.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError as exc:
            raise ConfigError(
                f"expected an IP address or CIDR such as 10.0.0.0/8, got {value!r}",
                join_path(sec.key_path("trusted_proxies"), position),
            ) from exc
    return tuple(networks)


def normalise_public_baseurl(value: str, path: str = "public_baseurl") -> str:
    try:
        parts = urlsplit(value)
    except ValueError as e:
        raise ConfigError(f"not a URL: {e}", path) from e
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"expected an http:// or https:// URL, got {value!r}", path)
    if parts.query or parts.fragment:
        raise ConfigError("must not contain a query string or #fragment", path)
    return value if value.endswith("/") else value + "/"


def derive_public_baseurl(server_name: str, listeners: tuple[ListenerConfig, ...]) -> str:
    """The URL clients reach us at when `public_baseurl` is unset.

    The first listener serving `client` decides: bound to one concrete address and not behind a
    proxy -> ``http://<address>:<port>/`` (the embedded default gives ``http://127.0.0.1:8008/``).
    Otherwise, as Synapse does, ``https://<server_name>/`` (``http://localhost:<port>/`` for
    a server named localhost).
    """
    client = next((lst for lst in listeners if lst.type == "http" and lst.has("client")), None)
    if client is None:
        return f"https://{server_name}/"
    address = client.bind_addresses[0] if client.bind_addresses else ""
    if not client.x_forwarded and address not in _WILDCARDS:
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{client.port}/"
    if server_name == "localhost":
        return f"http://localhost:{client.port}/"
    return f"https://{server_name}/"
