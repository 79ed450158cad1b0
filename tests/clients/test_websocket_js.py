"""The browser snippet of docs/websocket.md, run as written (extracted from the doc) against a real
server: in Debian's headless Chromium (driven by playwright-core, tests/clients/js/websocket_browser.mjs)
and with Node's WHATWG WebSocket (the browser API; `node --experimental-websocket` on Node 20+).
Subprotocol auth, a message pushed live, typing and receipt frames, sends, typing and a receipt
over the socket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config

from ..api.ephemeral_helpers import NO_PRESENCE, V3, User, ephemeral, q, timeline_ids
from ..conftest import make_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"
JS_DIR = Path(__file__).parent / "js"
NPM_NODE = JS_DIR / "node_modules" / ".bin" / "node"

HARNESS = r"""
const [base, token, roomId] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const lines = [];
process.stdin.setEncoding("utf8");
let buffered = "";
const waiters = [];
process.stdin.on("data", (d) => {
  buffered += d;
  let i;
  while ((i = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    const w = waiters.shift();
    if (w) w(line); else lines.push(line);
  }
});
const readLine = () => new Promise((r) => (lines.length ? r(lines.shift()) : waiters.push(r)));
const syncs = [];
let wake = null;
const conn = connectSync(base, token, (body) => { syncs.push(body); if (wake) { wake(); wake = null; } });
const nextSync = async () => {
  while (!syncs.length) await new Promise((r) => (wake = r));
  return syncs.shift();
};
const timeline = (body) => ((body.rooms.join[roomId] || {}).timeline || { events: [] }).events;
(async () => {
  conn.ws.onclose = (e) => out({ closed: e.code });
  await nextSync();
  out({ ready: true, protocol: conn.ws.protocol });
  const wanted = (await readLine()).trim();
  for (;;) {
    const body = await nextSync();
    if (timeline(body).some((e) => e.event_id === wanted)) break;
  }
  const sent = await conn.send(roomId, { msgtype: "m.text", body: "from js" }, "js-1");
  const again = await conn.send(roomId, { msgtype: "m.text", body: "from js" }, "js-1");
  await conn.typing(roomId, true);
  let error = null;
  try { await conn.request("GET", "/_matrix/client/v3/no/such/thing"); } catch (e) { error = e.errcode; }
  out({ got: wanted, sent: sent.event_id, again: again.event_id, error, nextBatch: conn.nextBatch });
  conn.ws.close(1000);
})().catch((e) => { out({ failure: String(e) }); process.exit(1); });
"""


def _snippet() -> str:
    match = re.search(r"```js\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/websocket.md has no js block"
    return match.group(1)


def _node_with_websocket() -> str | None:
    node = shutil.which("node")
    if node is None:
        return None
    probe = subprocess.run(
        [node, "--experimental-websocket", "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
        capture_output=True,
        timeout=30,
    )
    return node if probe.returncode == 0 else None


async def test_docs_js_snippet_over_websocket(aiohttp_client: Any, tmp_path: Path) -> None:
    node = _node_with_websocket()
    if node is None:
        pytest.skip("node with a WHATWG WebSocket is not installed")
    hs = await aiohttp_client(create_app_from_config(make_config(tmp_path, **NO_PRESENCE)))
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    script = tmp_path / "ws_snippet.mjs"
    script.write_text(_snippet() + HARNESS)
    base = str(hs.make_url("")).rstrip("/")
    proc = await asyncio.create_subprocess_exec(
        node,
        "--no-warnings",
        "--experimental-websocket",
        str(script),
        base,
        bob.token,
        room_id,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None

    async def line() -> dict[str, Any]:
        raw = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        assert raw, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        return dict(json.loads(raw))

    try:
        ready = await line()
        assert ready == {"ready": True, "protocol": "org.homeserver.ws.v1"}
        pushed = await alice.send(room_id, "to js")
        proc.stdin.write(f"{pushed}\n".encode())
        await proc.stdin.drain()
        result = await line()
        assert result["got"] == pushed
        assert result["sent"] == result["again"]  # idempotent by txn id
        assert result["error"] == "M_UNRECOGNIZED"
        assert result["nextBatch"].startswith("s")
        assert (await line())["closed"] == 1000
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    # What the snippet did is visible over HTTP.
    messages = await alice.get(f"{V3}/rooms/{q(room_id)}/messages", dir="b", limit=5)
    assert result["sent"] in [e["event_id"] for e in messages["chunk"]]
    body = await alice.sync(filter=json.dumps({"room": {"rooms": [room_id]}}))
    assert result["sent"] in timeline_ids(body, room_id)
    typing = ephemeral(body, room_id, "m.typing")
    assert typing and bob.user_id in typing[0]["content"]["user_ids"]


def _browser_or_skip() -> str:
    """Chromium's executable; without it (or playwright-core) skip, but fail under CI=true (tests/run.sh
    installs both)."""
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    missing = [str(p) for p in (NPM_NODE, JS_DIR / "node_modules" / "playwright-core") if not p.exists()]
    if chromium is None:
        missing.append("chromium (`apt-get install -y chromium`, or set CHROMIUM)")
    if missing:
        message = f"{', '.join(missing)} missing: tests/run.sh installs them (npm ci, apt chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    assert chromium is not None
    return chromium


async def test_docs_js_snippet_in_headless_chromium(aiohttp_client: Any, tmp_path: Path) -> None:
    chromium = _browser_or_skip()
    hs = await aiohttp_client(create_app_from_config(make_config(tmp_path, **NO_PRESENCE)))
    alice = await User.new(hs)
    bob = await User.new(hs)
    room_id = await alice.create_room()
    await bob.join(room_id)
    snippet = tmp_path / "websocket_snippet.js"
    snippet.write_text(_snippet())
    env = {
        **os.environ,
        "CHROMIUM": chromium,
        "HS_BASE_URL": str(hs.make_url("")).rstrip("/"),
        "TOKEN": bob.token,
        "ROOM_ID": room_id,
        "ALICE": alice.user_id,
        "SNIPPET": str(snippet),
    }
    proc = await asyncio.create_subprocess_exec(
        str(NPM_NODE),
        str(JS_DIR / "websocket_browser.mjs"),
        cwd=JS_DIR,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    async def line() -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), 120)  # type: ignore[union-attr]
        except TimeoutError:
            proc.kill()
            raw = b""
        assert raw, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
        return dict(json.loads(raw))

    async def tell(text: str) -> None:
        proc.stdin.write(f"{text}\n".encode())  # type: ignore[union-attr]
        await proc.stdin.drain()  # type: ignore[union-attr]

    try:
        # The browser offers permessage-deflate; the server declines it (docs/websocket.md, "Cost").
        assert await line() == {"ready": True, "protocol": "org.homeserver.ws.v1", "extensions": ""}
        pushed = await alice.send(room_id, "to chromium")
        await tell(pushed)
        assert await line() == {"got": pushed}
        await alice.typing(room_id, True, 30000)
        await alice.receipt(room_id, pushed)
        await tell("ephemeral")
        assert await line() == {"typing": True, "receipt": True}
        result = await line()
        assert result["sent"] == result["again"]  # idempotent by txn id
        assert result["error"] == "M_UNRECOGNIZED"
        assert result["nextBatch"].startswith("s")
        assert await line() == {"closed": 1000}
        assert await asyncio.wait_for(proc.wait(), 60) == 0, (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    # What the browser did is visible over HTTP: its message, its typing, its receipt.
    messages = await alice.get(f"{V3}/rooms/{q(room_id)}/messages", dir="b", limit=5)
    assert result["sent"] in [e["event_id"] for e in messages["chunk"]]
    body = await alice.sync(filter=json.dumps({"room": {"rooms": [room_id]}}))
    typing = ephemeral(body, room_id, "m.typing")
    assert typing and bob.user_id in typing[0]["content"]["user_ids"]
    receipts = ephemeral(body, room_id, "m.receipt")
    assert any(bob.user_id in r["content"].get(pushed, {}).get("m.read", {}) for r in receipts)
