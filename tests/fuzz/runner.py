"""Drive a running homeserver with spec-guided requests and collect the bad answers.

A *finding* is a response with status >= 500, or a 4xx whose body is not a Matrix error (a JSON
object with string ``errcode`` and ``error``; a user-interactive-auth 401 with ``flows`` counts as
one). The fuzzing user is a real (admin) user with real rooms, events, devices, media and an
alias, so requests often name things that exist; when a request logs the user out, deactivates
it or makes it leave its room, :meth:`World.ensure` builds what is missing again.

Command line (a long campaign against a server it starts itself)::

    python -m tests.fuzz.runner --engine sqlite --examples 200 [--seed N] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from synapse_compat_tests.client import registration_mac
from synapse_compat_tests.launcher import launch

from .spec_ops import Operation, load_operations
from .strategies import FuzzRequest, Seeds, request_strategy

V3 = "/_matrix/client/v3"
PASSWORD = "fuzz password 1"
_KEEP = 20  # ids of each kind remembered from responses


@dataclass
class Finding:
    operation: str
    status: int
    problem: str
    request: str
    response: str

    @property
    def signature(self) -> tuple[str, int, str]:
        return (self.operation, self.status, self.problem)

    def describe(self) -> str:
        return (
            f"[{self.status}] {self.operation}: {self.problem}\n    -> {self.request}\n    <- {self.response}"
        )


@dataclass
class Report:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    per_operation: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, int, str]] = field(default_factory=Counter)  # (op, status, errcode)

    @property
    def server_errors(self) -> int:
        """Responses >= 500, less the spec-mandated ones (504 M_NOT_YET_UPLOADED)."""
        mandated = sum(
            n
            for (op, status, errcode), n in self.outcomes.items()
            if (status, errcode) in SPEC_MANDATED_5XX and "media" in op
        )
        return sum(n for status, n in self.statuses.items() if status >= 500) - mandated

    def unique(self) -> dict[tuple[str, int, str], list[Finding]]:
        groups: dict[tuple[str, int, str], list[Finding]] = {}
        for finding in self.findings:
            groups.setdefault(finding.signature, []).append(finding)
        return groups

    def summary(self, limit: int = 60) -> str:
        lines = [
            f"{self.requests} requests; statuses {dict(sorted(self.statuses.items()))}; "
            f"{len(self.findings)} findings ({len(self.unique())} distinct)"
        ]
        for (_, _, _), group in list(self.unique().items())[:limit]:
            lines.append(f"{len(group)}x " + group[0].describe())
        return "\n".join(lines)


# The one 5xx the spec asks for: media created with POST /media/v1/create whose content has not
# been uploaded when `timeout_ms` runs out (content-repo.yaml, authed-content-repo.yaml).
SPEC_MANDATED_5XX = {(504, "M_NOT_YET_UPLOADED")}


def is_spec_mandated(status: int, body: Any, operation: str = "") -> bool:
    errcode = body.get("errcode") if isinstance(body, dict) else None
    return (
        (status, errcode) in SPEC_MANDATED_5XX and "media" in operation and isinstance(body.get("error"), str)
    )


def problem_with(status: int, body: Any, raw: bytes, operation: str = "") -> str | None:
    """What is wrong with this response, or None."""
    if status >= 500:
        if is_spec_mandated(status, body, operation):
            return None
        errcode = body.get("errcode") if isinstance(body, dict) else None
        return f"server error {errcode or raw[:80]!r}"
    if status < 400:
        return None
    if not isinstance(body, dict):
        return f"{status} body is not a JSON object: {raw[:80]!r}"
    if status == 401 and "flows" in body:
        return None  # user-interactive auth: errcode/error appear only after a failed stage
    if not isinstance(body.get("errcode"), str) or not isinstance(body.get("error"), str):
        return f"{status} body is not a Matrix error: {sorted(body)[:6]}"
    return None


class Connection:
    """A keep-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, bytes]:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                raw = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return resp.status, parsed, raw

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _q(segment: str) -> str:
    return quote(segment, safe="")


class World:
    """The fuzzing user's account, rooms and ids, rebuilt when a request destroys them."""

    def __init__(self, base_url: str, shared_secret: str) -> None:
        self.conn = Connection(base_url)
        self.shared_secret = shared_secret
        self.seeds = Seeds()
        self.user_id = ""
        self.token = ""
        self.other_token = ""
        self.room_id = ""
        self.setups = 0

    # -- plumbing ------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        status, parsed, _ = self.conn.request(method, path, data, headers)
        return status, parsed

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, parsed = self.call(method, path, body, token if token is not None else self.token)
        if status != 200:
            raise RuntimeError(f"fuzz setup: {method} {path} -> {status} {parsed}")
        return parsed

    def register(self, admin: bool) -> tuple[str, str, str]:
        localpart = f"fuzz{secrets.token_hex(4)}"
        nonce = self.ok("GET", "/_synapse/admin/v1/register", token="")["nonce"]
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": PASSWORD,
            "admin": admin,
            "mac": registration_mac(self.shared_secret, nonce, localpart, PASSWORD, admin),
        }
        reply = self.ok("POST", "/_synapse/admin/v1/register", body, token="")
        return reply["user_id"], reply["access_token"], reply["device_id"]

    @staticmethod
    def _remember(values: list[str], value: Any) -> None:
        if isinstance(value, str) and value and value not in values:
            values.append(value)
            if len(values) > _KEEP:  # forget the oldest, but never the first (see _first)
                del values[1 : len(values) - _KEEP + 1]

    @staticmethod
    def _first(values: list[str], value: str) -> None:
        """Make ``value`` the first of ``values`` (the strategies favour index 0)."""
        if value in values:
            values.remove(value)
        values.insert(0, value)
        del values[_KEEP:]

    # -- building the world --------------------------------------------------------------------

    def setup(self) -> None:
        """A fresh admin user, a second user, a public room with history, media, a filter."""
        self.setups += 1
        seeds = self.seeds
        self.user_id, self.token, device = self.register(admin=True)
        other_id, self.other_token, other_device = self.register(admin=False)
        seeds.server_name = self.user_id.split(":", 1)[1]
        for value in (other_id, f"@nobody:{seeds.server_name}"):
            self._remember(seeds.user_ids, value)
        self._first(seeds.user_ids, self.user_id)
        for value in (device, other_device):
            self._remember(seeds.device_ids, value)
        self._remember(seeds.passwords, PASSWORD)
        self.build_rooms()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "text/plain"}
        status, reply, _ = self.conn.request(
            "POST", "/_matrix/media/v3/upload?filename=a.txt", b"hello", headers
        )
        if status == 200 and isinstance(reply, dict):
            self._remember(seeds.media_ids, str(reply.get("content_uri", "")).rsplit("/", 1)[-1])
        reply = self.ok("POST", f"{V3}/user/{_q(self.user_id)}/filter", {"room": {"timeline": {"limit": 5}}})
        self._remember(seeds.filter_ids, reply.get("filter_id"))
        reply = self.ok("GET", f"{V3}/sync?timeout=0")
        self._remember(seeds.tokens, reply.get("next_batch"))

    def build_rooms(self) -> None:
        seeds = self.seeds
        alias = f"fuzz{secrets.token_hex(3)}"
        room = self.ok(
            "POST",
            f"{V3}/createRoom",
            {"preset": "public_chat", "room_alias_name": alias, "name": "fuzz", "topic": "fuzz topic"},
        )
        self.room_id = room["room_id"]
        self._first(seeds.room_ids, self.room_id)
        self._remember(seeds.aliases, f"#{alias}:{seeds.server_name}")
        self.ok("POST", f"{V3}/rooms/{_q(self.room_id)}/join", {}, token=self.other_token)
        for i in range(3):
            reply = self.ok(
                "PUT",
                f"{V3}/rooms/{_q(self.room_id)}/send/m.room.message/t{secrets.token_hex(4)}",
                {"msgtype": "m.text", "body": f"hello {i}"},
            )
            self._remember(seeds.event_ids, reply["event_id"])
        reply = self.ok("GET", f"{V3}/rooms/{_q(self.room_id)}/messages?dir=b&limit=5")
        self._remember(seeds.tokens, reply.get("end"))
        private = self.ok("POST", f"{V3}/createRoom", {"preset": "private_chat"}, token=self.other_token)
        self._remember(seeds.room_ids, private["room_id"])
        self.ok("PUT", f"{V3}/directory/list/room/{_q(self.room_id)}", {"visibility": "public"})

    def ensure(self) -> None:
        """Log in again, or start over, when fuzzed requests destroyed the world."""
        status, _ = self.call("GET", f"{V3}/account/whoami", token=self.token)
        if status != 200:
            status, reply = self.call(
                "POST",
                f"{V3}/login",
                {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": self.user_id},
                    "password": PASSWORD,
                },
            )
            if status == 200:
                self.token = reply["access_token"]
                self._remember(self.seeds.device_ids, reply.get("device_id"))
            else:
                self.setup()
                return
        status, reply = self.call("GET", f"{V3}/joined_rooms", token=self.token)
        if status != 200 or self.room_id not in (reply or {}).get("joined_rooms", []):
            self.build_rooms()

    # -- fuzzing -------------------------------------------------------------------------------

    def send(self, req: FuzzRequest) -> tuple[int, Any, bytes]:
        headers = dict(req.headers)
        if req.auth == "valid":
            headers["Authorization"] = f"Bearer {self.token}"
        elif req.auth == "bogus":
            headers["Authorization"] = "Bearer not-a-token"
        return self.conn.request(req.method, req.path, req.body, headers)

    def learn(self, body: Any) -> None:
        """Remember ids that responses hand out, so later requests can name them."""
        if not isinstance(body, dict):
            return
        seeds = self.seeds
        for key, kind in (
            ("event_id", seeds.event_ids),
            ("room_id", seeds.room_ids),
            ("session", seeds.sessions),
            ("next_batch", seeds.tokens),
            ("end", seeds.tokens),
            ("start", seeds.tokens),
            ("filter_id", seeds.filter_ids),
        ):
            self._remember(kind, body.get(key))
        uri = body.get("content_uri")
        if isinstance(uri, str):
            self._remember(seeds.media_ids, uri.rsplit("/", 1)[-1])


def _operation_seed(base: int, op: Operation) -> int:
    return base ^ zlib.crc32(op.name.encode())


def fuzz_operation(world: World, report: Report, op: Operation, examples: int, seed: int) -> None:
    """Send up to ``examples`` generated requests for ``op`` and record what comes back."""

    @hypothesis_seed(_operation_seed(seed, op))
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request_strategy(op, world.seeds))
    def one(req: FuzzRequest) -> None:
        try:
            status, body, raw = world.send(req)
        except (OSError, http.client.HTTPException) as exc:
            # No answer at all (dropped connection, time-out): as bad as a 500.
            status, body, raw = 599, None, repr(exc).encode()
        report.requests += 1
        report.statuses[status] += 1
        report.per_operation[op.name] += 1
        errcode = body.get("errcode") if isinstance(body, dict) else None
        report.outcomes[(op.name, status, str(errcode or ""))] += 1
        problem = problem_with(status, body, raw, op.name)
        if problem is not None:
            response = raw[:300].decode("utf-8", "replace")
            report.findings.append(Finding(op.name, status, problem, req.describe(), response))
        if status == 200:
            world.learn(body)
        if req.auth == "valid" and status == 401 and isinstance(body, dict):
            if body.get("errcode") == "M_UNKNOWN_TOKEN":
                world.ensure()

    one()


def run_campaign(
    base_url: str,
    shared_secret: str,
    examples: int,
    seed: int = 0,
    only: str | None = None,
    operations: Iterable[Operation] | None = None,
    progress: bool = False,
) -> Report:
    """``examples`` generated requests for every client-server operation of the spec."""
    world = World(base_url, shared_secret)
    world.setup()
    report = Report()
    ops = list(operations if operations is not None else load_operations())
    if only:
        ops = [op for op in ops if re.search(only, op.name)]
    try:
        for index, op in enumerate(ops):
            started = time.monotonic()
            fuzz_operation(world, report, op, examples, seed)
            world.ensure()
            if progress:
                print(
                    f"[{index + 1}/{len(ops)}] {op.name}: {report.per_operation[op.name]} requests "
                    f"in {time.monotonic() - started:.1f}s; {len(report.findings)} findings so far",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        world.conn.close()
    return report


# --------------------------------------------------------------------------- server logs


def tracebacks(log_text: str) -> Counter[str]:
    """Distinct server-side exceptions in a log: 'ExcType: msg @ innermost homeserver frame'."""
    found: Counter[str] = Counter()
    blocks = log_text.split("Traceback (most recent call last):")
    for block in blocks[1:]:
        lines = block.splitlines()
        frames = [ln.strip() for ln in lines if ln.strip().startswith("File ") and "/homeserver/" in ln]
        exc = next((ln for ln in lines if ln and not ln.startswith((" ", "\t")) and ":" in ln), "?")
        where = frames[-1] if frames else "?"
        found[f"{exc[:160]} @ {where}"] += 1
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "50")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "0")))
    parser.add_argument("--only", help="regex on 'file:METHOD /path' to pick operations")
    parser.add_argument("--base-url", help="fuzz this running server instead of starting one")
    parser.add_argument("--shared-secret", help="its registration_shared_secret")
    parser.add_argument("--outcomes", action="store_true", help="print (operation, status, errcode) counts")
    parser.add_argument("--keep", action="store_true", help="keep the server's work dir")
    args = parser.parse_args(argv)

    server = None
    if args.base_url:
        base_url, secret = args.base_url, args.shared_secret or ""
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.engine}-"))
        server = launch(args.engine, workdir, overrides=SERVER_OVERRIDES)
        base_url, secret = server.base_url, server.shared_secret
        print(f"server {base_url} ({args.engine}) in {workdir}", file=sys.stderr)
    started = time.monotonic()
    try:
        report = run_campaign(base_url, secret, args.examples, args.seed, args.only, progress=True)
    finally:
        if server is not None:
            server.stop()
            log = server.stderr_path.read_text(errors="replace")
            if not args.keep:
                shutil.rmtree(server.workdir, ignore_errors=True)
    print(report.summary(limit=200))
    if args.outcomes:
        for (name, status, errcode), count in sorted(report.outcomes.items()):
            print(f"{count:5d} {status} {errcode:24s} {name}")
    print(f"elapsed {time.monotonic() - started:.0f}s; 5xx responses: {report.server_errors}")
    if server is not None:
        for line, count in tracebacks(log).most_common():
            print(f"{count:5d}  {line}")
    return 1 if report.findings else 0


# Registration is open so that the registration endpoints reach their real code paths.
SERVER_OVERRIDES: dict[str, Any] = {
    "enable_registration": True,
    "enable_registration_without_verification": True,
    # The fuzzer's ids name made-up servers: with federation allowed, looking them up is a real
    # network request that fails with 502 (as Synapse). Federating with no one keeps the fuzzer on
    # this server: remote lookups are refused (403 M_FORBIDDEN) before any traffic.
    "federation_domain_whitelist": [],
}


if __name__ == "__main__":
    sys.exit(main())
