"""The import rules of DESIGN.md §2, checked by parsing imports (type-checking-only imports aside)."""

from __future__ import annotations

import ast
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


def test_metrics_is_a_leaf() -> None:
    """Storage, domain and HTTP code all feed homeserver.metrics, so it imports none of them."""
    assert _violations(_modules("metrics"), ("homeserver",), ("homeserver.metrics",)) == []
