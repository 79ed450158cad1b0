"""`database` and `redis` sections (Synapse's shapes), and database URLs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section
from homeserver.config.sections import DatabaseConfig, RedisConfig

SQLITE_NAMES = frozenset({"sqlite3", "sqlite"})
POSTGRES_NAMES = frozenset({"psycopg2", "psycopg", "postgres", "postgresql", "asyncpg"})
# Synapse database keys with no meaning for our engines, accepted silently.
_IGNORED_DB_KEYS = ("txn_limit", "allow_unsafe_locale")
_IGNORED_ARGS = ("cp_reconnect", "check_same_thread")


def read_database(root: Section, data_dir: str) -> DatabaseConfig:
    sec = root.section("database")
    legacy_path = root.get_opt_str("database_path")  # Synapse's pre-1.0 sqlite setting
    default_sqlite = legacy_path or f"{data_dir}/homeserver.db"
    name = sec.get_str("name", "sqlite3")
    sec.mark_read(*_IGNORED_DB_KEYS)
    args = sec.section("args")
    args.mark_read(*_IGNORED_ARGS)
    cp_min = args.get_int("cp_min", 5, minimum=1)
    cp_max = args.get_int("cp_max", 10, minimum=1)
    if cp_min > cp_max:
        raise ConfigError(f"cp_min ({cp_min}) must not exceed cp_max ({cp_max})", args.key_path("cp_min"))

    if name in SQLITE_NAMES:
        return DatabaseConfig(
            engine="sqlite",
            sqlite_path=args.get_str("database", default_sqlite),
            pg_user=None,
            pg_password=None,
            pg_database=None,
            pg_host="localhost",
            pg_port=5432,
            pg_sslmode=None,
            cp_min=cp_min,
            cp_max=cp_max,
        )
    if name not in POSTGRES_NAMES:
        raise sec.error("name", "'sqlite3' or 'psycopg2' (also accepted: postgres, asyncpg)", name)
    database = args.get_opt_str("database")
    dbname = args.get_opt_str("dbname")
    if database and dbname and database != dbname:
        raise ConfigError("set either `database` or `dbname`, not both", args.key_path("dbname"))
    return DatabaseConfig(
        engine="postgres",
        sqlite_path=default_sqlite,
        pg_user=args.get_opt_str("user"),
        pg_password=args.get_opt_str("password"),
        pg_database=database or dbname,
        pg_host=args.get_str("host", "localhost"),
        pg_port=args.get_int("port", 5432, minimum=1, maximum=65535),
        pg_sslmode=args.get_opt_str("sslmode"),
        cp_min=cp_min,
        cp_max=cp_max,
    )


def read_redis(root: Section) -> RedisConfig:
    sec = root.section("redis")
    password = sec.get_opt_str("password")
    password_path = sec.get_opt_str("password_path")
    if password_path:
        if password:
            raise ConfigError(
                "set either `password` or `password_path`, not both", sec.key_path("password_path")
            )
        password = read_secret_file(password_path, sec.key_path("password_path"))
    return RedisConfig(
        enabled=sec.get_bool("enabled", False),
        host=sec.get_str("host", "localhost"),
        port=sec.get_int("port", 6379, minimum=1, maximum=65535),
        password=password,
        dbid=sec.get_opt_int("dbid", minimum=0),
        use_tls=sec.get_bool("use_tls", False),
    )


def read_secret_file(path: str, key_path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read {path!r}: {e.strerror or e}", key_path) from e


def database_url_to_raw(url: str, source: str = "HOMESERVER_DATABASE_URL") -> dict[str, Any]:
    """A database URL as Synapse's `database` mapping.

    ``postgresql://user:pass@host:5432/db?sslmode=require`` (or ``postgres://``) and
    ``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db`` (SQLAlchemy's convention).
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url[len("sqlite://") :]
        if not path.startswith("/") or len(path) < 2:
            raise ConfigError(f"expected sqlite:///path/to/file.db, got {url!r}", source)
        return {"name": "sqlite3", "args": {"database": unquote(path[1:])}}
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(f"expected a postgresql:// or sqlite:/// URL, got scheme {parts.scheme!r}", source)
    args: dict[str, Any] = {}
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password:
        args["password"] = unquote(parts.password)
    if parts.hostname:
        args["host"] = parts.hostname
    try:
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"bad port in database URL: {e}", source) from e
    if port:
        args["port"] = port
    dbname = unquote(parts.path.lstrip("/"))
    if dbname:
        args["database"] = dbname
    query = parse_qs(parts.query)
    for key in ("sslmode", "cp_min", "cp_max"):
        if key in query:
            args[key] = query[key][-1]
    return {"name": "psycopg2", "args": args}
