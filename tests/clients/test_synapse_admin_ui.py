"""synapse-admin (the maintained fork, "Ketesa") driven in headless Chromium against a real server
process: log in as an admin, list and search users, open a user and deactivate them, list rooms,
open a room and see its members, delete a room, list media and event reports
(tests/clients/js/synapse_admin_ui.mjs, with playwright-core and Debian's `chromium`).

synapse-admin is not published on any package registry, so it cannot be installed here: build it
from its source yourself and point `SYNAPSE_ADMIN_DIST` at the built `dist/` directory (docs/admin.md
has the exact commands). Without it the test skips, in CI too."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_compat_tests.client import q
from synapse_compat_tests.harness import Homeserver, User, create_room, invite_user, join_room, send_text
from synapse_compat_tests.launcher import LaunchedServer

JS_DIR = Path(__file__).parent / "js"
NODE = JS_DIR / "node_modules" / ".bin" / "node"
PASSWORD = "correct horse battery staple 1"
ADMIN = "/_synapse/admin"

pytestmark = pytest.mark.node


def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _requirements() -> tuple[Path, str]:
    dist_env = os.environ.get("SYNAPSE_ADMIN_DIST")
    if not dist_env:
        pytest.skip(
            "SYNAPSE_ADMIN_DIST is not set: synapse-admin is on no package registry this project "
            "(or CI) can reach, so build it from its source and point SYNAPSE_ADMIN_DIST at its "
            "dist/ directory (see docs/admin.md, 'synapse-admin')"
        )
    dist = Path(dist_env)
    if not (dist / "index.html").is_file():
        pytest.fail(f"SYNAPSE_ADMIN_DIST={dist} has no index.html: not a synapse-admin build", pytrace=False)
    missing = [p for p in (NODE, JS_DIR / "node_modules" / "playwright-core") if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(map(str, missing))} missing: run `npm ci` in {JS_DIR}")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium executable: `apt-get install -y chromium` (or set CHROMIUM)")
    return dist, chromium


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def requirements() -> tuple[Path, str]:
    """Checked before the (module-scoped) server is started, so a skip costs nothing."""
    return _requirements()


@pytest.fixture
def static_site(requirements: tuple[Path, str]) -> Iterator[tuple[str, Path, str]]:
    """The synapse-admin build served over HTTP on a free loopback port (another origin than the
    homeserver, as in a real deployment, so CORS is exercised too)."""
    dist, chromium = requirements
    handler = functools.partial(_QuietHandler, directory=str(dist))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", dist, chromium
    finally:
        httpd.shutdown()
        httpd.server_close()


def _upload(user: User, content: bytes, name: str) -> str:
    resp = user.client.request(
        "POST",
        f"/_matrix/media/v3/upload?filename={q(name)}",
        data=content,
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 200, resp.describe()
    return str(resp.body["content_uri"])


def test_synapse_admin_ui(
    requirements: tuple[Path, str], server: LaunchedServer, static_site: tuple[str, Path, str], tmp_path: Path
) -> None:
    site_url, _dist, chromium = static_site
    hs = Homeserver(server.base_url, server.shared_secret, server.backend)
    admin = hs.register(localpart="uiadmin", password=PASSWORD, admin=True, displayname="UI Admin")
    alice = hs.register(localpart="alicewonder", password=PASSWORD, displayname="Alice Wonderland")
    bob = hs.register(localpart="bobbuilder", password=PASSWORD, displayname="Bob Builder")
    victim = hs.register(localpart="victimuser", password=PASSWORD, displayname="Victor Victim")

    kept = create_room(alice, name="Kept Garden", preset="public_chat")
    join_room(bob, kept)
    doomed = create_room(bob, name="Doomed Lounge", preset="private_chat")
    invite_user(bob, doomed, victim.user_id)
    join_room(victim, doomed)
    event_id = send_text(bob, kept, "something to report")
    report = alice.client.post(
        f"/_matrix/client/v3/rooms/{q(kept)}/report/{q(event_id)}", {"reason": "spam from the builder"}
    )
    assert report.status == 200, report.describe()
    media_uri = _upload(alice, b"hello media", "notes.txt")

    env = {
        **os.environ,
        "CHROMIUM": chromium,
        "SA_URL": site_url,
        "HS_BASE_URL": server.base_url,
        "ADMIN_USER": admin.localpart,
        "ADMIN_USER_ID": admin.user_id,
        "ADMIN_PASSWORD": PASSWORD,
        "ADMIN_TOKEN": admin.access_token,
        "ALICE_ID": alice.user_id,
        "BOB_ID": bob.user_id,
        "VICTIM_ID": victim.user_id,
        "KEPT_ROOM": kept,
        "DOOMED_ROOM": doomed,
        "MEDIA_ID": media_uri.rsplit("/", 1)[1],
        "REPORT_REASON": "spam from the builder",
        "ARTIFACTS": str(tmp_path),
    }
    proc = subprocess.run(
        [str(NODE), "synapse_admin_ui.mjs"],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(proc.stdout)
    output = f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
    assert proc.returncode == 0, output
    assert "OK" in proc.stdout.splitlines(), output

    # What the UI did really happened on the server.
    adm = admin.client
    user = adm.get(f"{ADMIN}/v2/users/{q(victim.user_id)}")
    assert user.status == 200 and user.body["deactivated"] is True, user.describe()
    gone = adm.get(f"{ADMIN}/v1/rooms/{q(doomed)}")
    assert gone.status == 404, gone.describe()
    still = adm.get(f"{ADMIN}/v1/rooms/{q(kept)}")
    assert still.status == 200, still.describe()
