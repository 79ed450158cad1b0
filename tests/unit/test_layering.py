"""The import rules of DESIGN.md §2, checked by parsing imports (type-checking-only imports aside)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "homeserver"

DOMAIN = ("services", "persist", "sync", "notifier", "state", "push", "media", "federation", "appservice")


def _runtime_imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(node: ast.AST, type_only: bool) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                yield from (alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield child.module
                yield from (f"{child.module}.{alias.name}" for alias in child.names)
            yield from walk(child, type_only)

    yield from walk(tree, False)


def _modules(subdir: str) -> list[Path]:
    return sorted((PACKAGE / subdir).rglob("*.py")) if (PACKAGE / subdir).exists() else []


def _violations(paths: list[Path], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in paths:
        for name in _runtime_imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden) and not any(
                name == a or name.startswith(a + ".") for a in allowed
            ):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_core_imports_nothing_of_the_package() -> None:
    assert _violations(_modules("core"), ("homeserver",), ("homeserver.core",)) == []


def test_events_and_crypto_only_use_core() -> None:
    paths = _modules("events") + _modules("crypto")
    allowed = ("homeserver.core", "homeserver.events", "homeserver.crypto")
    assert _violations(paths, ("homeserver",), allowed) == []


def test_replication_only_uses_core() -> None:
    """The stream bus sits under every service that publishes or consumes: it knows the streams and
    their rows (core/streams.py), never the services, stores or HTTP layer above it."""
    allowed = ("homeserver.core", "homeserver.replication")
    forbidden = ("homeserver", "aiohttp", "asyncpg", "sqlite3")
    assert _violations(_modules("replication"), forbidden, allowed) == []


def test_api_never_touches_storage() -> None:
    assert _violations(_modules("api"), ("homeserver.storage", "asyncpg", "sqlite3")) == []


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_code_never_imports_aiohttp_web(package: str) -> None:
    assert _violations(_modules(package), ("aiohttp.web",)) == []


def test_only_storage_imports_database_drivers() -> None:
    paths = [p for p in PACKAGE.rglob("*.py") if "storage" not in p.relative_to(PACKAGE).parts]
    assert _violations(paths, ("asyncpg", "sqlite3")) == []


def test_compat_tests_never_import_the_server() -> None:
    paths = sorted((ROOT / "synapse_compat_tests").rglob("*.py"))
    assert _violations(paths, ("homeserver",)) == []


# -- handlers never reach stores; SQL lives in storage/ ----------------------------------------------

# No exceptions left: the event pipeline rework (issue #11) took state/'s queries into storage/.
SQL_ALLOWED_OUTSIDE_STORAGE: tuple[str, ...] = ()

_SQL = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+TABLE)\b"
)


def _imported_names(tree: ast.Module, prefix: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def store_attributes() -> set[str]:
    """`Services` attributes that hold storage objects: `self.x = SomeStore(...)` in container.py,
    for any class imported from homeserver.storage, plus the database itself."""
    tree = ast.parse((PACKAGE / "container.py").read_text(encoding="utf-8"))
    storage_names = _imported_names(tree, "homeserver.storage")
    found = {"db"}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        func = node.value.func
        if not (isinstance(func, ast.Name) and func.id in storage_names):
            continue
        for target in node.targets:
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                if target.value.id == "self":
                    found.add(target.attr)
    return found


def _is_services(node: ast.expr, aliases: set[str]) -> bool:
    """`req.services`, `x.services`, or a local name bound to one of them."""
    if isinstance(node, ast.Attribute):
        return node.attr == "services"
    return isinstance(node, ast.Name) and node.id in aliases


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def handler_store_accesses(source: str, name: str, stores: set[str]) -> list[str]:
    tree = ast.parse(source)
    aliases = {"services"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_services(node.value, set()):
            aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if _is_services(node.value, aliases) and node.attr in stores:
            found.append(f"{name}:{node.lineno} reaches the store services.{node.attr}")
        elif node.attr in ("store", "db") or node.attr.endswith("_store"):
            found.append(f"{name}:{node.lineno} reaches a store through .{node.attr}")
    return found


def sql_strings(source: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "x".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if _SQL.search(text):
            found.append(f"{name}:{node.lineno}: {text[:60]!r}")
    return found


def test_store_attributes_are_found() -> None:
    # The checks below are only as good as this list: it must see the stores the container builds.
    stores = store_attributes()
    assert {"db", "users", "device_store", "events", "rooms"} <= stores
    assert not stores & {"auth", "accounts", "sync", "timeline", "directory", "config", "clock"}


def test_handlers_never_reach_stores() -> None:
    stores = store_attributes()
    found = [
        hit
        for path in _modules("api")
        for hit in handler_store_accesses(path.read_text(encoding="utf-8"), _name(path), stores)
    ]
    assert found == []


def test_store_access_check_catches_handlers() -> None:
    source = (
        "async def h(req):\n"
        "    await req.services.events.get_event('x')\n"
        "    services = req.services\n"
        "    await services.device_store.list_devices('u')\n"
        "    await req.services.notifications.store.list_notifications()\n"
        "    await req.services.timeline.get_messages()\n"
    )
    assert handler_store_accesses(source, "h.py", {"events", "device_store"}) == [
        "h.py:2 reaches the store services.events",
        "h.py:4 reaches the store services.device_store",
        "h.py:5 reaches a store through .store",
    ]


def test_no_sql_outside_storage() -> None:
    paths = [
        p
        for p in PACKAGE.rglob("*.py")
        if "storage" not in p.relative_to(PACKAGE).parts and _name(p) not in SQL_ALLOWED_OUTSIDE_STORAGE
    ]
    assert [hit for p in paths for hit in sql_strings(p.read_text(encoding="utf-8"), _name(p))] == []


def test_sql_check_catches_queries() -> None:
    source = (
        'A = "SELECT 1 FROM users WHERE x = $1"\n'
        'B = f"SELECT COALESCE(MAX({c}), 0) FROM {t}"\n'
        'C = "DELETE FROM access_tokens"\n'
        'D = "Select the room to join from the list"\n'
        'E = "INSERT the key"\n'
    )
    assert [hit.split(":")[1] for hit in sql_strings(source, "probe.py")] == ["1", "2", "3"]


def test_services_never_import_sync_or_api() -> None:
    # sync/ builds on services/; the reverse import made a cycle (filters now live in events/).
    assert _violations(_modules("services"), ("homeserver.sync", "homeserver.api")) == []


def test_metrics_is_a_leaf() -> None:
    """Storage, domain and HTTP code all feed homeserver.metrics, so it imports none of them."""
    assert _violations(_modules("metrics"), ("homeserver",), ("homeserver.metrics",)) == []
