"""Single sign-on against a real OpenID provider: `oidc-provider` (npm, OpenID-certified) started
on loopback by tests/clients/js/oidc_provider.mjs, its development login and consent pages
driven over HTTP as a browser would; then `m.login.token`.

Also `POST /login/get_token` (MSC3882), which needs no provider.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from homeserver.app import create_app_from_config
from tests.clients.test_js_e2ee import JS_DIR, NODE, _require_node_modules
from tests.conftest import make_config

from .helpers import auth, register

CLIENT_ID, CLIENT_SECRET = "matrix", "client-s3cret"
CLIENT_URL = "https://client.example/after-login"
MAPPING = {
    "config": {
        "localpart_template": "{{ user.preferred_username }}",
        "display_name_template": "{{ user.name }}",
        "email_template": "{{ user.email }}",
    }
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HS_PORT = _free_port()
HS_URL = f"http://127.0.0.1:{HS_PORT}"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_node_modules()
    if not (JS_DIR / "node_modules" / "oidc-provider").exists():
        pytest.skip("oidc-provider missing: run `npm ci` in tests/clients/js")
    port = _free_port()
    callback = f"{HS_URL}/_synapse/client/oidc/callback"
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(NODE), "oidc_provider.mjs", str(port), CLIENT_ID, CLIENT_SECRET, callback],
            cwd=JS_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # The provider prints its warnings before READY: poll the log, never block on the pipe.
        deadline = time.monotonic() + 30
        while "READY " not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "oidc-provider did not start: " + log.read_text()
            time.sleep(0.1)
        ready = next(line for line in log.read_text().splitlines() if line.startswith("READY "))
        yield ready.split()[1]
    finally:
        proc.terminate()
        proc.wait(10)


def _provider(issuer: str, idp_id: str = "school", **extra: Any) -> dict[str, Any]:
    return {
        "idp_id": idp_id,
        "idp_name": "School account",
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email"],
        "skip_verification": True,  # the test provider speaks http
        "user_mapping_provider": MAPPING,
        **extra,
    }


@pytest.fixture
async def hs(aiohttp_client: Any, tmp_path: Path, issuer: str) -> Any:
    config = make_config(
        tmp_path,
        public_baseurl=f"{HS_URL}/",
        ip_range_whitelist=["127.0.0.0/8"],
        oidc_providers=[_provider(issuer), _provider(issuer, "linking", allow_existing_users=True)],
        sso={"client_whitelist": ["https://client.example/"]},
    )
    return await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})


class Browser:
    """Just enough of a browser: cookies (for any host, even an IP), forms, manual redirects."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.session.close()

    async def get(self, url: str) -> aiohttp.ClientResponse:
        resp = await self.session.get(url, allow_redirects=False)
        await resp.read()
        return resp

    async def follow(self, url: str, *, stop_at: str) -> str:
        """Follow redirects (and the provider's login and consent forms) until a URL starting
        with `stop_at`; returns that URL without requesting it."""
        for _ in range(20):
            if url.startswith(stop_at):
                return url
            resp = await self.get(url)
            if resp.status in (302, 303):
                url = str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))
                continue
            assert resp.status == 200, (resp.status, url, await resp.text())
            url = await self._submit(resp, await resp.text())
        raise AssertionError("too many hops")

    async def _submit(self, page: aiohttp.ClientResponse, text: str) -> str:
        action = re.search(r'<form[^>]*action="([^"]+)"', text)
        assert action, text
        fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', text))
        if 'name="login"' in text:
            fields.update(login=self.login_name, password="any")
        resp = await self.session.post(
            page.url.join(aiohttp.client.URL(unescape(action.group(1)))), data=fields, allow_redirects=False
        )
        await resp.read()
        assert resp.status in (302, 303), (resp.status, await resp.text())
        return str(resp.url.join(aiohttp.client.URL(resp.headers["Location"])))

    login_name = ""


@pytest.fixture
async def browser() -> Any:
    b = Browser()
    yield b
    await b.close()


async def sso_login(browser: Browser, name: str, idp: str = "oidc-school", client_url: str = CLIENT_URL) -> Any:
    """Run the browser part; returns the callback's response."""
    browser.login_name = name
    start = f"{HS_URL}/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl={client_url}"
    resp = await browser.get(start)
    assert resp.status == 302, await resp.text()
    callback = await browser.follow(resp.headers["Location"], stop_at=f"{HS_URL}/_synapse/client/oidc/callback")
    browser.last_callback = callback  # type: ignore[attr-defined]
    return await browser.get(callback)


def login_token_of(resp: Any) -> str:
    assert resp.status == 302, resp.status
    location = resp.headers["Location"]
    assert location.startswith(CLIENT_URL + "?")
    return parse_qs(urlsplit(location).query)["loginToken"][0]


async def token_login(hs: Any, token: str) -> Any:
    return await hs.post("/_matrix/client/v3/login", json={"type": "m.login.token", "token": token})


async def test_login_flows_list_the_provider(hs: Any) -> None:
    body = await (await hs.get("/_matrix/client/v3/login")).json()
    types = [f["type"] for f in body["flows"]]
    assert types == ["m.login.password", "m.login.sso", "m.login.token", "m.login.application_service"]
    sso = next(f for f in body["flows"] if f["type"] == "m.login.sso")
    assert sso["identity_providers"] == [
        {"id": "oidc-school", "name": "School account"},
        {"id": "oidc-linking", "name": "School account"},
    ]


async def test_full_sso_login_creates_the_account(hs: Any, browser: Browser) -> None:
    token = login_token_of(await sso_login(browser, "kim.minjun"))
    resp = await token_login(hs, token)
    body = await resp.json()
    assert resp.status == 200, body
    assert body["user_id"] == "@kim.minjun:test.local"
    profile = await (await hs.get("/_matrix/client/v3/profile/@kim.minjun:test.local")).json()
    assert profile["displayname"] == "김민준"
    # a login token works once
    resp = await token_login(hs, token)
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    admin = await register(hs, admin=True)
    view = await (
        await hs.get("/_synapse/admin/v2/users/@kim.minjun:test.local", headers=auth(admin["access_token"]))
    ).json()
    assert view["threepids"][0]["address"] == "minjun.kim@school.example"
    [external] = view["external_ids"]
    assert external["auth_provider"] == "oidc-school"
    # Signing in again finds the same account through the subject, not the name.
    token = login_token_of(await sso_login(browser, "kim.minjun"))
    assert (await (await token_login(hs, token)).json())["user_id"] == "@kim.minjun:test.local"


async def test_names_that_are_no_localpart_are_mapped(hs: Any, browser: Browser) -> None:
    token = login_token_of(await sso_login(browser, "Park Teacher"))
    assert (await (await token_login(hs, token)).json())["user_id"] == "@park=20teacher:test.local"


async def test_existing_user_name_is_refused_unless_allowed(hs: Any, browser: Browser) -> None:
    await register(hs, "existing", password="local-pw")
    resp = await sso_login(browser, "existing")
    assert resp.status == 409
    assert "already taken" in await resp.text()
    # A provider configured with allow_existing_users links the account instead.
    token = login_token_of(await sso_login(browser, "existing", idp="oidc-linking"))
    assert (await (await token_login(hs, token)).json())["user_id"] == "@existing:test.local"


async def test_untrusted_client_url_gets_a_confirmation_page(hs: Any, browser: Browser) -> None:
    resp = await sso_login(browser, "someone", client_url="https://elsewhere.example/cb")
    assert resp.status == 200
    page = await resp.text()
    assert "elsewhere.example" in page and "loginToken=" in page


async def test_bad_state_cookie_and_replay_are_refused(hs: Any, browser: Browser) -> None:
    resp = await sso_login(browser, "replayer")
    login_token_of(resp)
    callback = browser.last_callback  # type: ignore[attr-defined]
    # The cookie is gone after the callback; a fresh browser without it is refused.
    async with aiohttp.ClientSession() as bare:
        resp2 = await bare.get(callback, allow_redirects=False)
        assert resp2.status == 400 and "no session" in await resp2.text()
    # A new login whose callback carries another state than its cookie.
    browser.login_name = "replayer"
    start = f"{HS_URL}/_matrix/client/v3/login/sso/redirect/oidc-school?redirectUrl={CLIENT_URL}"
    first = await browser.get(start)
    callback = await browser.follow(first.headers["Location"], stop_at=f"{HS_URL}/_synapse/client/oidc/callback")
    forged = re.sub(r"state=[^&]+", "state=forged", callback)
    resp = await browser.get(forged)
    assert resp.status == 400 and "state" in await resp.text()
    # a tampered cookie
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        resp = await other.get(callback, allow_redirects=False, headers={"Cookie": "oidc_session=abc.def"})
        assert resp.status == 400


async def test_redirect_errors(hs: Any) -> None:
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect/oidc-nope?redirectUrl=https://client.example/")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect/oidc-school")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect/oidc-school?redirectUrl=javascript:alert(1)")
    assert resp.status == 400
    resp = await hs.get("/_synapse/client/oidc/callback?code=x&state=y")
    assert resp.status == 400
    resp = await hs.get("/_synapse/client/oidc/callback?error=access_denied&error_description=no")
    assert resp.status == 400 and "refused" in await resp.text()


async def test_without_sso_the_endpoints_are_unrecognised(client: Any) -> None:
    resp = await client.get("/_matrix/client/v3/login/sso/redirect?redirectUrl=https://x.example/")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    flows = [f["type"] for f in (await (await client.get("/_matrix/client/v3/login")).json())["flows"]]
    assert "m.login.sso" not in flows and "m.login.token" not in flows


async def test_get_login_token_signs_in_another_device(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, login_via_existing_session={"enabled": True, "token_timeout": "1m"})
    hs = await aiohttp_client(create_app_from_config(config))
    user = await register(hs, "phoneuser", password="pw-123")
    headers = auth(user["access_token"])
    caps = await (await hs.get("/_matrix/client/v3/capabilities", headers=headers)).json()
    assert caps["capabilities"]["m.get_login_token"] == {"enabled": True}
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=headers)
    assert resp.status == 401
    session = (await resp.json())["session"]
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token",
        json={
            "auth": {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "phoneuser"},
                "password": "pw-123",
                "session": session,
            }
        },
        headers=headers,
    )
    body = await resp.json()
    assert resp.status == 200, body
    assert body["expires_in_ms"] == 60_000
    resp = await token_login(hs, body["login_token"])
    new = await resp.json()
    assert resp.status == 200 and new["user_id"] == user["user_id"] and new["device_id"] != user["device_id"]


async def test_get_login_token_is_off_by_default(client: Any) -> None:
    user = await register(client)
    resp = await client.post("/_matrix/client/v1/login/get_token", json={}, headers=auth(user["access_token"]))
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
