"""Configuration loading: defaults, Synapse-style files, env overrides, errors, generate -> load."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.config import (
    ConfigError,
    HomeserverConfig,
    ListenerConfig,
    RateLimit,
    generate_config_yaml,
    load_config,
    supported_keys,
)
from homeserver.config.build import LEGACY_KEYS

# What `synapse generate` writes (plus the Debian package's usual edits), PostgreSQL flavour.
SYNAPSE_POSTGRES_YAML = """\
# Configuration file for Synapse.
server_name: "example.com"
pid_file: /var/run/matrix-synapse.pid
public_baseurl: https://matrix.example.com
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    bind_addresses: ['::1', '127.0.0.1']
    resources:
      - names: [client, federation]
        compress: false
  - port: 9000
    type: metrics
    bind_addresses: ['127.0.0.1']
database:
  name: psycopg2
  txn_limit: 10000
  args:
    user: synapse_user
    password: s3cret
    dbname: synapse
    host: db.internal
    port: 5433
    cp_min: 2
    cp_max: 20
    keepalives_idle: 10
log_config: "{log_config}"
media_store_path: /var/lib/matrix-synapse/media
max_upload_size: 100M
registration_shared_secret: "abc123"
report_stats: false
macaroon_secret_key: "mac"
form_secret: "form"
signing_key_path: "/etc/matrix-synapse/homeserver.signing.key"
trusted_key_servers:
  - server_name: "matrix.org"
suppress_key_server_warning: true
enable_metrics: true
rc_message:
  per_second: 0.5
  burst_count: 20
rc_login:
  address:
    per_second: 1
  failed_attempts:
    per_second: 0.5
    burst_count: 7
rc_admin_redaction:
  per_second: 1
  burst_count: 50
presence:
  enabled: false
  include_offline_users_on_sync: true
user_directory:
  search_all_users: true
redis:
  enabled: true
  host: redis.internal
  dbid: 2
room_list_publication_rules:
  - action: allow
    user_id: "@admin*:example.com"
encryption_enabled_by_default_for_room_type: invite
session_lifetime: 30d
refresh_token_lifetime: 7d
app_service_config_files:
  - /etc/matrix-synapse/bridge.yaml
email:
  smtp_host: mail.example.com
oidc_providers: []
"""

SYNAPSE_SQLITE_YAML = """\
server_name: "chat.school.example"
pid_file: /data/homeserver.pid
listeners:
  - port: 8008
    tls: false
    type: http
    x_forwarded: true
    resources:
      - names: [client, federation]
        compress: false
database:
  name: sqlite3
  args:
    database: /data/homeserver.db
media_store_path: /data/media_store
registration_shared_secret: "xyz"
report_stats: false
macaroon_secret_key: "m"
form_secret: "f"
signing_key_path: "/data/chat.school.example.signing.key"
trusted_key_servers:
  - server_name: "matrix.org"
"""


def write(tmp_path: Path, text: str, name: str = "homeserver.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def load_raw(tmp_path: Path, raw: dict[str, Any], env: dict[str, str] | None = None) -> HomeserverConfig:
    return load_config(write(tmp_path, yaml.safe_dump(raw)), env=env or {})


# -- defaults ---------------------------------------------------------------------------------


def test_embedded_defaults() -> None:
    config = load_config(env={})
    assert config.server_name == "localhost"
    assert config.data_dir == "./data"
    assert config.public_baseurl == "http://127.0.0.1:8008/"
    assert config.signing_key_path == "./data/localhost.signing.key"
    assert config.pid_file is None
    assert config.instance_name == "main"
    assert config.log_level == "INFO"
    assert config.listeners == (
        ListenerConfig(
            port=8008,
            bind_addresses=("127.0.0.1",),
            type="http",
            tls=False,
            x_forwarded=False,
            resources=("client", "federation", "keys", "media", "openid", "health", "metrics"),
        ),
    )
    assert not config.enable_metrics
    assert not config.serves_metrics(config.listeners[0])
    assert config.database.engine == "sqlite"
    assert config.database.sqlite_path == "./data/homeserver.db"
    assert config.media_store_path == "./data/media_store"
    assert config.max_upload_size == 50 * 1024 * 1024
    assert config.max_image_pixels == 32 * 1024 * 1024
    assert config.max_request_body_size == 200 * 65536
    assert not config.enable_registration
    assert config.registration_shared_secret is None
    assert config.rc_message == RateLimit(0.2, 10)
    assert config.rc_registration == RateLimit(0.17, 3)
    assert config.rc_login.address == RateLimit(1, 100)
    assert config.rc_login.account == RateLimit(0.003, 5)
    assert config.rc_login.failed_attempts == RateLimit(0.17, 3)
    assert config.soft_file_limit == 0
    assert config.rc_joins.local == RateLimit(0.1, 10)
    assert config.rc_joins.remote == RateLimit(0.01, 10)
    assert config.rc_admin_redaction is None
    assert config.room_list_publication_rules == ()
    assert not config.may_publish_room("@a:localhost", "!r:localhost", [])
    assert config.may_create_alias("@a:localhost", "!r:localhost", "#a:localhost")
    assert config.presence_enabled
    assert config.refreshable_access_token_lifetime == 5 * 60 * 1000
    assert config.session_lifetime is None
    assert config.redis.enabled is False
    assert config.user_directory.enabled and not config.user_directory.search_all_users
    assert config.encryption_enabled_by_default_for_room_type == "off"
    assert config.default_room_version == "11"
    assert config.enable_authenticated_media and config.enable_media_repo
    assert "0.0.0.0/32" in config.url_preview_ip_range_blacklist
    assert config.unknown_keys == ()
    assert config.config_files == ()


def test_derived_paths_follow_data_dir_and_server_name(tmp_path: Path) -> None:
    config = load_raw(tmp_path, {"server_name": "example.org", "data_dir": "/srv/hs"})
    assert config.signing_key_path == "/srv/hs/example.org.signing.key"
    assert config.database.sqlite_path == "/srv/hs/homeserver.db"
    assert config.media_store_path == "/srv/hs/media_store"


def test_config_is_frozen() -> None:
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server_name = "other"  # type: ignore[misc]


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    config = load_raw(
        tmp_path,
        {
            "registration_shared_secret": "TOPSECRET1",
            "database": {"name": "psycopg2", "args": {"password": "TOPSECRET2"}},
            "redis": {"password": "TOPSECRET3"},
        },
    )
    assert "TOPSECRET" not in repr(config)


# -- Synapse-style files ----------------------------------------------------------------------


def test_synapse_postgres_config(tmp_path: Path) -> None:
    log_config = write(tmp_path, "version: 1\n", "log.config")
    config = load_config(write(tmp_path, SYNAPSE_POSTGRES_YAML.format(log_config=log_config)), env={})
    assert config.server_name == "example.com"
    assert config.public_baseurl == "https://matrix.example.com/"
    assert config.serve_client_wellknown
    assert config.pid_file == "/var/run/matrix-synapse.pid"
    http, metrics = config.listeners
    assert http == ListenerConfig(8008, ("::1", "127.0.0.1"), "http", False, True, ("client", "federation"))
    assert metrics == ListenerConfig(9000, ("127.0.0.1",), "metrics", False, False, ("metrics",))
    assert config.serves_metrics(metrics) and not config.serves_metrics(http)
    db = config.database
    assert (db.engine, db.pg_user, db.pg_password, db.pg_database) == (
        "postgres",
        "synapse_user",
        "s3cret",
        "synapse",
    )
    assert (db.pg_host, db.pg_port, db.cp_min, db.cp_max) == ("db.internal", 5433, 2, 20)
    assert db.postgres_dsn == "postgresql://synapse_user:s3cret@db.internal:5433/synapse"
    assert config.log_config == log_config
    assert config.media_store_path == "/var/lib/matrix-synapse/media"
    assert config.max_upload_size == 100 * 1024 * 1024
    assert config.registration_shared_secret == "abc123"
    assert config.signing_key_path == "/etc/matrix-synapse/homeserver.signing.key"
    assert [s.server_name for s in config.trusted_key_servers] == ["matrix.org"]
    assert config.rc_message == RateLimit(0.5, 20)
    # Missing fields fall back to the default one by one, as in Synapse.
    assert config.rc_login.address == RateLimit(1, 100)
    assert config.rc_login.account == RateLimit(0.003, 5)
    assert config.rc_login.failed_attempts == RateLimit(0.5, 7)
    assert config.rc_admin_redaction == RateLimit(1, 50)
    assert not config.presence_enabled
    assert config.user_directory.search_all_users
    assert (config.redis.enabled, config.redis.host, config.redis.port, config.redis.dbid) == (
        True,
        "redis.internal",
        6379,
        2,
    )
    assert config.may_publish_room("@admin1:example.com", "!r:example.com", [])
    assert not config.may_publish_room("@bob:example.com", "!r:example.com", [])
    assert config.encryption_enabled_by_default_for_room_type == "invite"
    assert config.session_lifetime == 30 * 24 * 3600 * 1000
    assert config.refresh_token_lifetime == 7 * 24 * 3600 * 1000
    assert config.app_service_config_files == ("/etc/matrix-synapse/bridge.yaml",)
    # Generated-config boilerplate is accepted silently; the rest is reported.
    assert config.unknown_keys == (
        "database.args.keepalives_idle",
        "presence.include_offline_users_on_sync",
    )
    assert config.extras["email"] == {"smtp_host": "mail.example.com"}


def test_synapse_sqlite_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SYNAPSE_SQLITE_YAML), env={})
    assert config.database.engine == "sqlite"
    assert config.database.sqlite_path == "/data/homeserver.db"
    # No bind_addresses: Synapse's default (all interfaces, IPv6 and IPv4).
    assert config.listeners[0].bind_addresses == ("::", "0.0.0.0")
    # Behind a proxy without public_baseurl: Synapse's https://<server_name>/.
    assert config.public_baseurl == "https://chat.school.example/"
    assert not config.serve_client_wellknown
    assert config.unknown_keys == ()


@pytest.mark.parametrize("name", ["psycopg2", "postgres", "postgresql", "asyncpg"])
def test_postgres_engine_names(tmp_path: Path, name: str) -> None:
    config = load_raw(tmp_path, {"database": {"name": name, "args": {"database": "hs"}}})
    assert config.database.engine == "postgres"
    assert config.database.pg_database == "hs"


def test_legacy_synapse_keys(tmp_path: Path) -> None:
    config = load_raw(
        tmp_path,
        {
            "database_path": "/old/homeserver.db",
            "use_presence": False,
            "metrics_port": 9100,
            "worker_name": "reader1",
            "listeners": [{"port": 8008, "type": "http", "bind_address": "10.0.0.1", "resources": []}],
        },
    )
    assert config.database.sqlite_path == "/old/homeserver.db"
    assert not config.presence_enabled
    assert config.listeners[0].bind_addresses == ("10.0.0.1",)
    assert config.listeners[1] == ListenerConfig(9100, ("127.0.0.1",), "metrics", False, False, ("metrics",))
    assert config.instance_name == "reader1"


def test_multiple_files_and_conf_d(tmp_path: Path) -> None:
    main = write(tmp_path, "server_name: a.example\nenable_search: false\n")
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-name.yaml").write_text("server_name: b.example\n")
    (conf_d / "20-other.yaml").write_text("allow_guest_access: true\n")
    (conf_d / "README").write_text("not yaml")
    config = load_config([main, str(conf_d)], env={})
    assert config.server_name == "b.example"
    assert config.allow_guest_access and not config.enable_search
    assert len(config.config_files) == 3


def test_registration_shared_secret_path(tmp_path: Path) -> None:
    secret = write(tmp_path, "from-file\n", "secret")
    config = load_raw(tmp_path, {"registration_shared_secret_path": secret})
    assert config.registration_shared_secret == "from-file"
    assert config.registration_shared_secret_path == secret


def test_manhole_and_consent_are_reported_not_fatal(tmp_path: Path) -> None:
    config = load_raw(
        tmp_path,
        {
            "listeners": [
                {"port": 8008, "type": "http", "resources": [{"names": ["client", "consent"]}]},
                {"port": 9000, "type": "manhole"},
            ]
        },
    )
    assert [lst.port for lst in config.listeners] == [8008]
    assert config.listeners[0].resources == ("client",)
    assert config.unknown_keys == (
        "listeners[0].resources[0].names[1] (consent)",
        "listeners[1] (type 'manhole')",
    )


def test_overrides_argument() -> None:
    config = load_config(
        env={},
        overrides={
            "server_name": "test.local",
            "enable_registration": True,
            "registration_requires_token": True,
        },
    )
    assert config.server_name == "test.local"
    assert config.enable_registration and config.registration_requires_token


def test_encryption_off_unquoted(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "encryption_enabled_by_default_for_room_type: off\n"), env={})
    assert config.encryption_enabled_by_default_for_room_type == "off"


def test_null_durations_mean_forever(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "redaction_retention_period: null\nrefreshable_access_token_lifetime:\n"), env={}
    )
    assert config.redaction_retention_period is None
    assert config.refreshable_access_token_lifetime is None


# -- TLS ---------------------------------------------------------------------------------------


def test_tls_listener_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_raw(tmp_path, {"listeners": [{"port": 8448, "type": "http", "tls": True, "resources": []}]})
    assert info.value.path == "tls_certificate_path"
    assert str(info.value).startswith("tls_certificate_path: missing")


# -- environment ------------------------------------------------------------------------------


def test_env_conveniences() -> None:
    config = load_config(
        env={
            "HOMESERVER_SERVER_NAME": "env.example",
            "HOMESERVER_DATA_DIR": "/var/hs",
            "HOMESERVER_DATABASE_URL": "postgresql://u%40x:p%3Ass@pg:6543/hsdb?sslmode=require",
        }
    )
    assert config.server_name == "env.example"
    assert config.data_dir == "/var/hs"
    assert config.signing_key_path == "/var/hs/env.example.signing.key"
    db = config.database
    assert (db.engine, db.pg_user, db.pg_password, db.pg_host, db.pg_port, db.pg_database, db.pg_sslmode) == (
        "postgres",
        "u@x",
        "p:ss",
        "pg",
        6543,
        "hsdb",
        "require",
    )


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///relative/hs.db", "relative/hs.db"), ("sqlite:////abs/hs.db", "/abs/hs.db")],
)
def test_env_sqlite_url(url: str, path: str) -> None:
    config = load_config(env={"HOMESERVER_DATABASE_URL": url})
    assert config.database.engine == "sqlite"
    assert config.database.sqlite_path == path


def test_env_path_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "server_name: file.example\nrc_message:\n  per_second: 1\n")
    config = load_config(
        path,
        env={
            "HOMESERVER__SERVER_NAME": "env.example",
            "HOMESERVER__ENABLE_METRICS": "true",
            "HOMESERVER__RC_MESSAGE__BURST_COUNT": "99",
            "HOMESERVER__RC_LOGIN__ADDRESS__PER_SECOND": "0",
            "HOMESERVER__MAX_UPLOAD_SIZE": "10M",
            "HOMESERVER__APP_SERVICE_CONFIG_FILES": "[a.yaml, b.yaml]",
            "HOMESERVER__REDIS": "{enabled: true, host: r}",
            "UNRELATED": "x",
        },
    )
    assert config.server_name == "env.example"
    assert config.enable_metrics
    assert config.rc_message == RateLimit(1, 99)
    assert config.rc_login.address.disabled
    assert config.max_upload_size == 10 * 1024 * 1024
    assert config.app_service_config_files == ("a.yaml", "b.yaml")
    assert config.redis.enabled and config.redis.host == "r"


def test_env_edits_default_listener() -> None:
    config = load_config(env={"HOMESERVER__LISTENERS__0__PORT": "9999"})
    assert config.listeners[0].port == 9999
    assert config.listeners[0].has("client")
    assert config.public_baseurl == "http://127.0.0.1:9999/"


def test_env_path_refines_database_url() -> None:
    config = load_config(
        env={"HOMESERVER_DATABASE_URL": "postgresql://u@h/db", "HOMESERVER__DATABASE__ARGS__CP_MAX": "40"}
    )
    assert config.database.pg_host == "h" and config.database.cp_max == 40


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMESERVER_SERVER_NAME", "from-os.example")
    assert load_config().server_name == "from-os.example"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOMESERVER_DATABASE_URL": "mysql://x/y"}, "HOMESERVER_DATABASE_URL: expected a postgresql://"),
        ({"HOMESERVER__LISTENERS__5__PORT": "1"}, "HOMESERVER__LISTENERS__5__PORT: index 5 is past the end"),
        (
            {"HOMESERVER__LISTENERS__0__PORT": "abc"},
            "listeners[0].port: expected an integer between 1 and 65535",
        ),
    ],
)
def test_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert str(info.value).startswith(message)


# -- validation errors name the key path --------------------------------------------------------


ERROR_CASES: list[tuple[dict[str, Any], str]] = [
    (
        {"listeners": [{"port": "abc", "type": "http"}]},
        "listeners[0].port: expected an integer between 1 and 65535, got 'abc'",
    ),
    (
        {"listeners": [{"port": 70000}]},
        "listeners[0].port: expected an integer between 1 and 65535, got 70000",
    ),
    ({"listeners": [{"type": "http"}]}, "listeners[0].port: missing"),
    (
        {"listeners": [{"port": 1, "type": "replication"}]},
        "listeners[0].type: expected one of 'http', 'metrics'",
    ),
    ({"listeners": [{"port": 1, "path": "/run/hs.sock"}]}, "listeners[0].path: UNIX socket"),
    (
        {"listeners": [{"port": 1, "resources": [{"names": ["client", "bogus"]}]}]},
        "listeners[0].resources[0].names[1]: unknown resource 'bogus'",
    ),
    (
        {"listeners": [{"port": 1, "x_forwarded": "maybe"}]},
        "listeners[0].x_forwarded: expected true or false",
    ),
    ({"listeners": "8008"}, "listeners: expected a list, got '8008'"),
    ({"server_name": "bad name!"}, "server_name: expected a server name"),
    ({"server_name": ["a"]}, "server_name: expected a string, got ['a']"),
    ({"public_baseurl": "ftp://x/"}, "public_baseurl: expected an http:// or https:// URL"),
    ({"public_baseurl": "https://x/?a=b"}, "public_baseurl: must not contain a query"),
    ({"database": {"name": "mysql"}}, "database.name: expected 'sqlite3' or 'psycopg2'"),
    ({"database": {"name": "psycopg2", "args": {"port": "x"}}}, "database.args.port: expected an integer"),
    (
        {"database": {"args": {"cp_min": 10, "cp_max": 2}}},
        "database.args.cp_min: cp_min (10) must not exceed",
    ),
    ({"database": "sqlite"}, "database: expected a mapping, got 'sqlite'"),
    ({"rc_message": {"per_second": "fast"}}, "rc_message.per_second: expected a number, got 'fast'"),
    ({"rc_login": {"address": {"burst_count": -1}}}, "rc_login.address.burst_count: expected a number >= 0"),
    ({"rc_federation": {"concurrent": 0}}, "rc_federation.concurrent: expected an integer >= 1, got 0"),
    ({"max_upload_size": "50Q"}, "max_upload_size: expected a size in bytes"),
    ({"max_upload_size": 0}, "max_upload_size: expected a size greater than zero"),
    ({"session_lifetime": "5 fortnights"}, "session_lifetime: expected a duration"),
    (
        {"session_lifetime": "1h", "refresh_token_lifetime": "2h"},
        "refresh_token_lifetime: must not exceed session_lifetime",
    ),
    ({"enable_registration": True}, "enable_registration: open registration without any verification"),
    ({"enable_registration": "perhaps"}, "enable_registration: expected true or false, got 'perhaps'"),
    ({"log_level": "LOUD"}, "log_level: expected one of DEBUG, INFO"),
    ({"log_config": "/nonexistent/log.config"}, "log_config: no such file"),
    ({"default_room_version": "99"}, "default_room_version: expected a known room version"),
    ({"encryption_enabled_by_default_for_room_type": "some"}, "encryption_enabled_by_default_for_room_type"),
    (
        {"room_list_publication_rules": [{"action": "maybe"}]},
        "room_list_publication_rules[0].action: expected one",
    ),
    ({"room_list_publication_rules": [{"user_id": "*"}]}, "room_list_publication_rules[0].action: missing"),
    (
        {"thumbnail_sizes": [{"width": 32, "height": 0}]},
        "thumbnail_sizes[0].height: expected an integer >= 1",
    ),
    (
        {"url_preview_ip_range_blacklist": ["10.0.0.0/33"]},
        "url_preview_ip_range_blacklist[0]: expected an IP range",
    ),
    ({"app_service_config_files": "a.yaml"}, "app_service_config_files: expected a list of strings"),
    ({"app_service_config_files": ["a", 3]}, "app_service_config_files[1]: expected a string, got 3"),
    ({"auto_join_rooms": ["welcome"]}, "auto_join_rooms[0]: expected a room alias"),
    (
        {"trusted_key_servers": [{"verify_keys": {}}]},
        "trusted_key_servers[0].server_name: expected a server name",
    ),
    ({"redis": {"port": 0}}, "redis.port: expected an integer between 1 and 65535, got 0"),
    ({"user_directory": {"enabled": "sometimes"}}, "user_directory.enabled: expected true or false"),
    (
        {"registration_shared_secret": "a", "registration_shared_secret_path": "/x"},
        "registration_shared_secret_path: set either",
    ),
    (
        {"registration_shared_secret_path": "/nonexistent/secret"},
        "registration_shared_secret_path: cannot read",
    ),
]


@pytest.mark.parametrize(("raw", "message"), ERROR_CASES, ids=[m.split(":")[0] for _, m in ERROR_CASES])
def test_errors_name_the_key_path(tmp_path: Path, raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_raw(tmp_path, raw)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.path == message.split(":")[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [("- a\n- b\n", "the top level must be a mapping"), ("key: [unclosed\n", "invalid YAML")],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, text), env={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/homeserver.yaml", env={})


# -- unknown keys -----------------------------------------------------------------------------


def test_unknown_keys_reported_top_level_and_nested(tmp_path: Path) -> None:
    config = load_raw(
        tmp_path,
        {
            "report_stats": True,  # accepted silently
            "macaroon_secret_key": "x",
            "outbound_federation_restricted_to": ["a"],
            "rc_login": {"address": {"per_second": 1, "burst": 3}},
            "redis": {"enabled": False, "sentinel": True},
            "listeners": [{"port": 8008, "tag": "main", "additional_resources": {}, "resources": []}],
        },
    )
    assert config.unknown_keys == (
        "listeners[0].additional_resources",
        "outbound_federation_restricted_to",
        "rc_login.address.burst",
        "redis.sentinel",
    )


# -- generate -> load ---------------------------------------------------------------------------


def _comparable(config: HomeserverConfig) -> HomeserverConfig:
    return dataclasses.replace(config, extras={}, config_files=())


@pytest.mark.parametrize(
    ("server_name", "data_dir"), [("localhost", "./data"), ("example.org", "/var/lib/hs")]
)
def test_generated_config_loads_to_defaults(tmp_path: Path, server_name: str, data_dir: str) -> None:
    text = generate_config_yaml(server_name=server_name, data_dir=data_dir)
    generated = load_config(write(tmp_path, text), env={})
    defaults = load_config(env={}, overrides={"server_name": server_name, "data_dir": data_dir})
    assert generated.unknown_keys == ()
    assert _comparable(generated) == _comparable(defaults)


def test_generated_config_mentions_every_supported_key() -> None:
    text = generate_config_yaml()
    mentioned = set(re.findall(r"^#?([a-z_0-9]+):", text, flags=re.MULTILINE))
    missing = supported_keys() - LEGACY_KEYS - mentioned
    assert not missing, f"generate_config_yaml lacks: {sorted(missing)}"


def test_generated_config_with_secret(tmp_path: Path) -> None:
    text = generate_config_yaml("example.org", "/d", registration_shared_secret='we"ird')
    assert load_config(write(tmp_path, text), env={}).registration_shared_secret == 'we"ird'


def test_docs_mention_every_supported_key() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = docs.read_text(encoding="utf-8")
    missing = {key for key in supported_keys() if f"`{key}`" not in text}
    assert not missing, f"docs/configuration.md lacks: {sorted(missing)}"
