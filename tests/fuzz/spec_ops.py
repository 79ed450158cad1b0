"""The client-server spec's operations, with every ``$ref`` inlined, ready for generation.

The spec's OpenAPI 3.1 files are split: each endpoint group is one file, with ``$ref``s into
``definitions/`` and into the event schemas two directories up. Fuzzing needs self-contained
schemas, so each reference is resolved against the file that holds it and inlined. Recursive
schemas (push rule conditions, nested filters) are cut at a fixed depth, where the schema becomes
``{}`` (any JSON value), which is still a fine thing to send.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

SPEC_DIR = Path(__file__).resolve().parents[2] / "synapse_compat_tests" / "matrix-spec" / "data"
CLIENT_SERVER_DIR = SPEC_DIR / "api" / "client-server"
_METHODS = ("get", "put", "post", "delete", "patch")
_MAX_REF_DEPTH = 12

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path | query | header
    required: bool
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    spec_file: str
    method: str  # upper case
    base_path: str  # e.g. /_matrix/client/v3
    path_template: str  # e.g. /rooms/{roomId}/send/{eventType}/{txnId}
    operation_id: str
    parameters: tuple[Parameter, ...]
    body_schema: dict[str, Any] | None
    body_content_type: str | None
    body_required: bool
    authenticated: bool  # needs a user access token (access token optional counts as False)
    auth_optional: bool
    tags: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.spec_file}:{self.method} {self.path_template}"


@functools.cache
def _load(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_Loader)


def _pointer(doc: Any, fragment: str) -> Any:
    node = doc
    for part in fragment.lstrip("/").split("/"):
        if not part:
            continue
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def resolve(node: Any, base: Path, depth: int = 0) -> Any:
    """Return ``node`` with every ``$ref`` (relative to file ``base``) inlined."""
    if isinstance(node, list):
        return [resolve(v, base, depth) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        if depth >= _MAX_REF_DEPTH:
            return {}
        ref = str(node["$ref"])
        target_file, _, fragment = ref.partition("#")
        path = (base.parent / target_file).resolve() if target_file else base
        target = _pointer(_load(path), fragment)
        merged = resolve(target, path, depth + 1)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(merged, dict):
            merged = {**merged, **resolve(siblings, base, depth)}
        return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("example", "examples", "description", "x-changedInMatrixVersion"):
            continue
        out[key] = resolve(value, base, depth)
    return out


def _base_path(doc: dict[str, Any]) -> str:
    for server in doc.get("servers") or []:
        variables = server.get("variables") or {}
        base = (variables.get("basePath") or {}).get("default")
        if isinstance(base, str):
            return base
    return "/_matrix/client/v3"


def _security(op: dict[str, Any], doc: dict[str, Any]) -> tuple[bool, bool]:
    security = op.get("security", doc.get("security")) or []
    names = {name for req in security for name in (req or {"<none>": []})}
    needs = bool(names & {"accessTokenBearer", "accessTokenQuery"})
    optional = "<none>" in names or not security
    return needs and not optional, needs and optional


def load_operations(spec_dir: Path = CLIENT_SERVER_DIR) -> list[Operation]:
    ops: list[Operation] = []
    for path in sorted(spec_dir.glob("*.yaml")):
        doc = _load(path)
        if not isinstance(doc, dict) or "paths" not in doc:
            continue
        base = _base_path(doc)
        for template, item in (doc.get("paths") or {}).items():
            item = resolve(item, path)
            shared = item.get("parameters") or []
            for method in _METHODS:
                op = item.get(method)
                if not isinstance(op, dict):
                    continue
                params: dict[tuple[str, str], Parameter] = {}
                for raw in [*shared, *(op.get("parameters") or [])]:
                    param = Parameter(
                        name=str(raw["name"]),
                        location=str(raw["in"]),
                        required=bool(raw.get("required", False)),
                        schema=dict(raw.get("schema") or {}),
                    )
                    params[(param.location, param.name)] = param
                body = op.get("requestBody") or {}
                content = body.get("content") or {}
                ctype = next(iter(content), None)
                schema = (content.get(ctype) or {}).get("schema") if ctype else None
                authenticated, optional = _security(op, doc)
                ops.append(
                    Operation(
                        spec_file=path.stem,
                        method=method.upper(),
                        base_path=base,
                        path_template=str(
                            template
                        ).strip(),  # '/events ' and '/rooms/{roomId}/invite ' disambiguate
                        operation_id=str(op.get("operationId", f"{method}{template}")),
                        parameters=tuple(params.values()),
                        body_schema=schema if isinstance(schema, dict) else ({} if ctype else None),
                        body_content_type=ctype,
                        body_required=bool(body.get("required", False)),
                        authenticated=authenticated,
                        auth_optional=optional,
                        tags=tuple(op.get("tags") or ()),
                    )
                )
    return ops
