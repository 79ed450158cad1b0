"""Validate responses against the Matrix spec's OpenAPI files.

The spec's data is vendored in ``synapse_compat_tests/matrix-spec`` (Apache-2.0, see its README;
override with env ``MATRIX_SPEC_DIR``). Its API
files are OpenAPI 3.1, whose schema objects are JSON Schema draft 2020-12, so schemas are validated
with ``jsonschema``'s Draft202012Validator. ``$ref`` between files (``definitions/``,
``../../event-schemas/...``, ``#/components/...``) is resolved with ``referencing`` against
``file://`` URIs. OpenAPI-only keywords (``example``, ``deprecated``, ``x-*``) are annotations
that jsonschema ignores; OpenAPI 3.0's ``nullable: true`` is rewritten to a ``"null"`` type.
``format`` is not asserted (the spec's custom formats such as ``mx-user-id`` are not standard).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .client import Response

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def spec_dir() -> Path:
    env = os.environ.get("MATRIX_SPEC_DIR")
    path = Path(env) if env else Path(__file__).resolve().parent / "matrix-spec"
    if not (path / "data" / "api").is_dir():
        raise FileNotFoundError(
            f"Matrix spec not found at {path} (expected data/api inside); set MATRIX_SPEC_DIR"
        )
    return path.resolve()


def api_dir(api: str = "client-server") -> Path:
    return spec_dir() / "data" / "api" / api


# --------------------------------------------------------------------------- loading


try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        out = {str(k): _normalise(v) for k, v in node.items()}
        if out.get("nullable") is True and "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            if "null" not in types:
                out["type"] = [*types, "null"]
        return out
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return node


@functools.cache
def load_document(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return _normalise(yaml.load(fh, Loader=_Loader))


def _uri_to_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise LookupError(f"refusing to retrieve non-file schema URI {uri!r}")
    return Path(unquote(parts.path))


@functools.cache
def _retrieve(uri: str) -> Resource[Any]:
    return Resource.from_contents(load_document(_uri_to_path(uri)), default_specification=DRAFT202012)


_REGISTRY: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]  # attrs field


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(*tokens: str) -> str:
    return "".join("/" + _escape(t) for t in tokens)


def _walk(doc: Any, pointer: str) -> Any:
    node = doc
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _follow_refs(uri: str, pointer: str) -> tuple[str, str, Any]:
    """Follow OpenAPI-level $refs (response/requestBody objects); returns (file uri, pointer, node)."""
    for _ in range(20):
        node = _walk(load_document(_uri_to_path(uri)), pointer)
        if not (isinstance(node, dict) and "$ref" in node):
            return uri, pointer, node
        target_file, _, frag = str(node["$ref"]).partition("#")
        if target_file:
            uri = (_uri_to_path(uri).parent / target_file).resolve().as_uri()
        pointer = unquote(frag)
    raise AssertionError(f"$ref chain too long at {uri}#{pointer}")


# --------------------------------------------------------------------------- operations


def _find_operation(
    api_file: str, path_template: str, method: str, api: str
) -> tuple[str, str, dict[str, Any]]:
    path = (api_dir(api) / api_file).resolve()
    if not path.is_file():
        raise AssertionError(f"no spec file {path}")
    doc = load_document(path)
    paths: dict[str, Any] = doc.get("paths", {})
    candidates = [path_template]
    for server in doc.get("servers", []):
        base = server.get("variables", {}).get("basePath", {}).get("default")
        if base and path_template.startswith(base):
            candidates.append(path_template[len(base) :])
    for prefix in ("/_matrix/client/v3", "/_matrix/client/r0", "/_matrix/client/v1", "/_matrix/client"):
        if path_template.startswith(prefix):
            candidates.append(path_template[len(prefix) :])
    for cand in candidates:
        if cand in paths:
            op = paths[cand].get(method.lower())
            if op is None:
                raise AssertionError(f"{api_file}: {cand} has no {method.upper()} operation")
            return path.as_uri(), _pointer("paths", cand, method.lower()), op
    raise AssertionError(f"{api_file}: no path {path_template!r} (have {sorted(paths)})")


def response_schema_ref(
    api_file: str, path_template: str, method: str, status: int, api: str = "client-server"
) -> str | None:
    """The ``file://...#/pointer`` of a documented response's JSON schema, or None if it has no body."""
    uri, op_ptr, op = _find_operation(api_file, path_template, method, api)
    responses = op.get("responses", {})
    key = str(status)
    if key not in responses:
        key = f"{str(status)[0]}XX" if f"{str(status)[0]}XX" in responses else "default"
    if key not in responses:
        raise AssertionError(
            f"spec {api_file} documents no {status} response for {method.upper()} {path_template} "
            f"(documented: {sorted(responses)})"
        )
    r_uri, r_ptr, resp = _follow_refs(uri, op_ptr + _pointer("responses", key))
    content = resp.get("content") or {}
    if "application/json" not in content or "schema" not in content["application/json"]:
        return None
    return f"{r_uri}#{r_ptr}{_pointer('content', 'application/json', 'schema')}"


def request_schema_ref(
    api_file: str, path_template: str, method: str, api: str = "client-server"
) -> str | None:
    uri, op_ptr, op = _find_operation(api_file, path_template, method, api)
    if "requestBody" not in op:
        return None
    r_uri, r_ptr, body = _follow_refs(uri, op_ptr + _pointer("requestBody"))
    if "schema" not in (body.get("content") or {}).get("application/json", {}):
        return None
    return f"{r_uri}#{r_ptr}{_pointer('content', 'application/json', 'schema')}"


@functools.cache
def _validator(ref: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=_REGISTRY)


def validate(ref: str, instance: Any, what: str) -> None:
    errors = sorted(_validator(ref).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}" for e in errors[:10]]
        raise AssertionError(f"{what} does not match the spec schema {ref}:\n" + "\n".join(lines))


def assert_matches_spec(
    api_file: str, path_template: str, method: str, status: int, body: Any, api: str = "client-server"
) -> None:
    """Assert ``status`` is documented for the operation and ``body`` validates against its schema."""
    ref = response_schema_ref(api_file, path_template, method, status, api)
    if ref is None:
        return
    validate(ref, body, f"{method.upper()} {path_template} {status} response")


def is_documented(
    api_file: str, path_template: str, method: str, status: int, api: str = "client-server"
) -> bool:
    """Whether the spec documents ``status`` (or its ``NXX`` / ``default``) for the operation."""
    _, _, op = _find_operation(api_file, path_template, method, api)
    responses = op.get("responses", {})
    return any(key in responses for key in (str(status), f"{str(status)[0]}XX", "default"))


def assert_response_matches_spec(
    resp: Response, api_file: str, path_template: str, status: int | None = None
) -> Any:
    """Check ``resp.status`` (default: 200) and validate its body; returns the body."""
    expected = 200 if status is None else status
    assert resp.status == expected, f"expected {expected}, got {resp.describe()}"
    assert_matches_spec(api_file, path_template, resp.method, resp.status, resp.body)
    return resp.body


def assert_request_matches_spec(
    api_file: str, path_template: str, method: str, body: Any, api: str = "client-server"
) -> None:
    """Check that a request body a test sends is itself valid per the spec (keeps tests honest)."""
    ref = request_schema_ref(api_file, path_template, method, api)
    if ref is not None:
        validate(ref, body, f"{method.upper()} {path_template} request body")


def definition_ref(relative: str, api: str = "client-server") -> str:
    return (api_dir(api) / relative).resolve().as_uri() + "#"


def assert_error(
    resp: Response, status: int | Collection[int], errcode: str | Collection[str] | None = None
) -> dict[str, Any]:
    """Assert the standard error shape: JSON object with string ``errcode`` (and ``error``)."""
    statuses = {status} if isinstance(status, int) else set(status)
    assert resp.status in statuses, f"expected status {sorted(statuses)}, got {resp.describe()}"
    ctype = (resp.header("Content-Type") or "").split(";")[0].strip().lower()
    assert ctype == "application/json", f"error response Content-Type is {ctype!r}: {resp.describe()}"
    body = resp.body
    assert isinstance(body, dict), f"error body is not a JSON object: {resp.describe()}"
    validate(definition_ref("definitions/errors/error.yaml"), body, "error body")
    if "error" in body:
        assert isinstance(body["error"], str), f"'error' must be a string: {resp.describe()}"
    if errcode is not None:
        codes = {errcode} if isinstance(errcode, str) else set(errcode)
        assert body["errcode"] in codes, f"expected errcode {sorted(codes)}, got {resp.describe()}"
    return body
