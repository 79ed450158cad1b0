"""Writing a registration file (Synapse's YAML format) for the homeserver's
`app_service_config_files`."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml


def generate_registration(
    *,
    id: str,
    url: str | None,
    sender_localpart: str,
    user_regexes: tuple[str, ...] = (),
    alias_regexes: tuple[str, ...] = (),
    exclusive: bool = True,
    rate_limited: bool = False,
    receive_ephemeral: bool = False,
    protocols: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A registration with fresh random tokens; regexes are checked to compile."""
    for regex in (*user_regexes, *alias_regexes):
        re.compile(regex)
    registration: dict[str, Any] = {
        "id": id,
        "url": url,
        "as_token": secrets.token_urlsafe(32),
        "hs_token": secrets.token_urlsafe(32),
        "sender_localpart": sender_localpart,
        "rate_limited": rate_limited,
        "receive_ephemeral": receive_ephemeral,
        "namespaces": {
            "users": [{"exclusive": exclusive, "regex": r} for r in user_regexes],
            "aliases": [{"exclusive": exclusive, "regex": r} for r in alias_regexes],
            "rooms": [],
        },
    }
    if protocols:
        registration["protocols"] = list(protocols)
    return registration


def write_registration(path: str | Path, registration: dict[str, Any]) -> None:
    Path(path).write_text(yaml.safe_dump(registration, sort_keys=False))


def load_registration(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("as_token", "hs_token", "id")
    ):
        raise ValueError(f"{path}: not an appservice registration")
    return data
