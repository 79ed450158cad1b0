"""Pure pieces of the config package: size/duration parsing, rules, URLs, log-config translation."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
from pathlib import Path
from typing import Any

import pytest

from homeserver.config import ListenerConfig, RateLimit, RoomDirectoryRule, parse_duration, parse_size
from homeserver.config.database import database_url_to_raw
from homeserver.config.env import parse_env_value
from homeserver.config.errors import ConfigError
from homeserver.config.listeners import derive_public_baseurl
from homeserver.config.logsetup import load_log_config, translate_synapse_log_config
from homeserver.config.parsing import Section, parse_bool

K, M, G = 1024, 1024**2, 1024**3
SEC, MIN, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("10K", 10 * K),
        ("50M", 50 * M),
        ("2G", 2 * G),
        ("1T", 1024**4),
        ("50m", 50 * M),
        ("10MiB", 10 * M),
        ("10MB", 10 * M),
        ("1.5M", int(1.5 * M)),
        (" 5 K ", 5 * K),
    ],
)
def test_parse_size(value: Any, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["", "M", "10Q", "ten", "-5", -1, True, None, [1], "1.5.5M"])
def test_parse_size_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (500, 500),
        ("500", 500),
        ("250ms", 250),
        ("30s", 30 * SEC),
        ("5m", 5 * MIN),
        ("1h", HOUR),
        ("7d", 7 * DAY),
        ("2w", 14 * DAY),
        ("1y", 365 * DAY),
        ("1.5h", int(1.5 * HOUR)),
    ],
)
def test_parse_duration(value: Any, expected: int) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "h", "5M", "5 fortnights", "5x", -1, False, None, {"a": 1}])
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("yes", True), ("off", False), ("TRUE", True), ("0", False), (1, True)],
)
def test_parse_bool(value: Any, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, 1.0, []])
def test_parse_bool_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_bool(value)


def test_section_tracks_unread_keys() -> None:
    sec = Section({"a": 1, "b": {"c": 2, "d": 3}, "e": [{"f": 1, "g": 2}]})
    sec.get_int("a", 0)
    sec.section("b").get_int("c", 0)
    for item in sec.sections("e"):
        item.get_int("f", 0)
    assert sec.unread_paths() == ["b.d", "e[0].g"]
    assert "zzz" not in sec.unread_paths()
    assert sec.read_keys() == {"a", "b", "e"}


def test_section_error_message() -> None:
    sec = Section({"x": {"port": "abc"}}).section("x")
    with pytest.raises(ConfigError) as info:
        sec.get_int("port", 1, minimum=1, maximum=65535)
    assert str(info.value) == "x.port: expected an integer between 1 and 65535, got 'abc'"
    assert info.value.path == "x.port"


def test_rate_limit_disabled() -> None:
    assert RateLimit(0, 10).disabled
    assert RateLimit(-1, 10).disabled
    assert not RateLimit(0.1, 10).disabled


@pytest.mark.parametrize(
    ("rule", "user", "room", "aliases", "expected"),
    [
        (RoomDirectoryRule("allow"), "@a:x", "!r:x", [], True),
        (RoomDirectoryRule("allow", user_id="@admin*:x"), "@admin2:x", "!r:x", [], True),
        (RoomDirectoryRule("allow", user_id="@admin*:x"), "@bob:x", "!r:x", [], False),
        (RoomDirectoryRule("allow", user_id="@ADMIN:X"), "@admin:x", "!r:x", [], True),  # case-insensitive
        (RoomDirectoryRule("allow", alias="#pub-*:x"), "@a:x", "!r:x", ["#other:x", "#pub-1:x"], True),
        (RoomDirectoryRule("allow", alias="#pub-*:x"), "@a:x", "!r:x", [], False),
        (RoomDirectoryRule("allow", room_id="!r?:x"), "@a:x", "!r1:x", [], True),
        (RoomDirectoryRule("allow", room_id="!r?:x"), "@a:x", "!r12:x", [], False),
        (RoomDirectoryRule("allow", user_id="@a.b:x"), "@aXb:x", "!r:x", [], False),  # '.' is literal
    ],
)
def test_room_directory_rule(
    rule: RoomDirectoryRule, user: str, room: str, aliases: list[str], expected: bool
) -> None:
    assert rule.matches(user, room, aliases) is expected


def _listener(
    port: int, bind: tuple[str, ...], x_forwarded: bool = False, resources: tuple[str, ...] = ("client",)
) -> ListenerConfig:
    return ListenerConfig(port, bind, "http", False, x_forwarded, resources)


@pytest.mark.parametrize(
    ("server_name", "listeners", "expected"),
    [
        ("localhost", (_listener(8008, ("127.0.0.1",)),), "http://127.0.0.1:8008/"),
        ("localhost", (_listener(8008, ("::1",)),), "http://[::1]:8008/"),
        ("localhost", (_listener(8448, ("::", "0.0.0.0")),), "http://localhost:8448/"),
        ("example.com", (_listener(8008, ("::", "0.0.0.0")),), "https://example.com/"),
        ("example.com", (_listener(8008, ("127.0.0.1",), x_forwarded=True),), "https://example.com/"),
        (
            "example.com",
            (_listener(9000, ("127.0.0.1",), resources=("federation",)),),
            "https://example.com/",
        ),
        ("example.com", (), "https://example.com/"),
    ],
)
def test_derive_public_baseurl(
    server_name: str, listeners: tuple[ListenerConfig, ...], expected: str
) -> None:
    assert derive_public_baseurl(server_name, listeners) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://h/db", {"name": "psycopg2", "args": {"host": "h", "database": "db"}}),
        (
            "postgresql://u:p@[::1]:5433/db?cp_max=30",
            {
                "name": "psycopg2",
                "args": {
                    "user": "u",
                    "password": "p",
                    "host": "::1",
                    "port": 5433,
                    "database": "db",
                    "cp_max": "30",
                },
            },
        ),
        ("sqlite:///:memory:", {"name": "sqlite3", "args": {"database": ":memory:"}}),
    ],
)
def test_database_url_to_raw(url: str, expected: dict[str, Any]) -> None:
    assert database_url_to_raw(url) == expected


@pytest.mark.parametrize("url", ["sqlite://", "mysql://h/db", "postgresql://h:notaport/db"])
def test_database_url_rejects(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        database_url_to_raw(url)
    assert info.value.path == "HOMESERVER_DATABASE_URL"


SYNAPSE_LOG_CONFIG = """\
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
  structured:
    class: synapse.logging.TerseJsonFormatter
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
handlers:
  file:
    class: logging.handlers.TimedRotatingFileHandler
    formatter: precise
    filename: {log_file}
    when: midnight
    backupCount: 3
    filters: [context]
    encoding: utf8
  buffer:
    class: synapse.logging.handlers.PeriodicallyFlushingMemoryHandler
    target: file
    capacity: 10
    flushLevel: 30
    period: 5
  remote:
    class: synapse.logging.RemoteHandler
    host: localhost
    port: 9000
loggers:
  synapse.storage.SQL:
    level: INFO
root:
  level: INFO
  handlers: [buffer, remote]
disable_existing_loggers: false
"""


def test_synapse_log_config_is_translated(tmp_path: Path) -> None:
    path = tmp_path / "log.config"
    path.write_text(SYNAPSE_LOG_CONFIG.format(log_file=tmp_path / "homeserver.log"))
    data = load_log_config(str(path))
    assert data["filters"]["context"] == {}
    assert data["handlers"]["buffer"]["class"] == "logging.handlers.MemoryHandler"
    assert "period" not in data["handlers"]["buffer"]
    assert "remote" not in data["handlers"]
    assert data["root"]["handlers"] == ["buffer"]
    assert "class" not in data["formatters"]["structured"]
    # Translated, it is a valid dictConfig; restore the global logging state afterwards.
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    try:
        logging.config.dictConfig(data)
        assert isinstance(root.handlers[0], logging.handlers.MemoryHandler)
    finally:
        for handler in root.handlers:
            if handler not in saved_handlers:
                target = getattr(handler, "target", None)
                handler.close()
                if target is not None:
                    target.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_log_config_must_be_dictconfig(tmp_path: Path) -> None:
    path = tmp_path / "log.config"
    path.write_text("handlers: {}\n")
    with pytest.raises(ConfigError, match="log_config"):
        load_log_config(str(path))


def test_translate_leaves_plain_configs_alone() -> None:
    data = {"version": 1, "handlers": {"console": {"class": "logging.StreamHandler"}}}
    assert translate_synapse_log_config(data) == {
        "version": 1,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8448", 8448),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ("", ""),
        ("[a, b]", ["a", "b"]),
        ("{per_second: 1}", {"per_second": 1}),
        ("0x1F", "0x1F"),  # secrets stay strings
        ("0123", "0123"),
        ("1_000", "1_000"),
        ("10.50", "10.50"),
        ("example.com:8448", "example.com:8448"),
        ("key: [unclosed", "key: [unclosed"),
    ],
)
def test_parse_env_value(text: str, expected: Any) -> None:
    assert parse_env_value(text) == expected
