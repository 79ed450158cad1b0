"""Single sign-on against a real OpenID provider: `oidc-provider` (npm, OpenID-certified) started
on loopback by tests/clients/js/oidc_provider.mjs, its development login and consent pages
driven over HTTP as a browser would; then `m.login.token`, and `m.login.sso` user-interactive
auth through its fallback page. On SQLite and PostgreSQL.

Also `POST /login/get_token` (MSC3882), which needs no provider.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from yarl import URL

from homeserver.app import create_app_from_config
from homeserver.config import HomeserverConfig
from homeserver.core.clock import FakeClock
from tests.clients.test_js_e2ee import JS_DIR, NODE, _require_node_modules
from tests.conftest import make_config, services_of

from .helpers import auth, register

pytestmark = pytest.mark.node

CLIENT_ID, CLIENT_SECRET = "matrix", "client-s3cret"
CLIENT_URL = "https://client.example/after-login"
MAPPING = {
    "config": {
        "localpart_template": "{{ user.preferred_username }}",
        "display_name_template": "{{ user.name }}",
        "email_template": "{{ user.email }}",
    }
}
MINUTE = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The provider must know the callback URL before the homeserver starts: a fixed port per run.
HS_PORT = _free_port()
HS_URL = f"http://127.0.0.1:{HS_PORT}"
CALLBACK = f"{HS_URL}/_synapse/client/oidc/callback"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _require_node_modules()
    if not (JS_DIR / "node_modules" / "oidc-provider").exists():
        pytest.skip("oidc-provider missing: run `npm ci` in tests/clients/js")
    port = _free_port()
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(NODE), "oidc_provider.mjs", str(port), CLIENT_ID, CLIENT_SECRET, CALLBACK],
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


def _provider(issuer: str, idp_id: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "idp_id": idp_id,
        "idp_name": name,
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["openid", "profile", "email"],
        "skip_verification": True,  # the test provider speaks http
        "user_mapping_provider": MAPPING,
        **extra,
    }


class Hs:
    """The test client plus the fake clock the server runs on."""

    def __init__(self, client: Any, clock: FakeClock, issuer: str) -> None:
        self.client = client
        self.clock = clock
        self.issuer = issuer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture
async def hs(engine_config: Callable[..., HomeserverConfig], aiohttp_client: Any, issuer: str) -> Hs:
    config = sso_config(engine_config, issuer)
    clock = FakeClock(int(time.time() * 1000))
    client = await aiohttp_client(
        create_app_from_config(config, clock=clock), server_kwargs={"port": HS_PORT}
    )
    return Hs(client, clock, issuer)


def sso_config(engine_config: Callable[..., HomeserverConfig], issuer: str) -> HomeserverConfig:
    userinfo_mapping = {"config": {**MAPPING["config"], "display_name_template": "{{ user.nickname }}"}}
    return engine_config(
        public_baseurl=f"{HS_URL}/",
        ip_range_whitelist=["127.0.0.0/8"],
        oidc_providers=[
            _provider(issuer, "school", "School account", idp_brand="keycloak"),
            _provider(issuer, "linking", "Linking", allow_existing_users=True),
            _provider(
                issuer,
                "staff",
                "Staff only",
                attribute_requirements=[{"attribute": "groups", "value": "staff"}],
            ),
            _provider(issuer, "closed", "Closed", enable_registration=False, allow_existing_users=True),
            # As Synapse's Google example: the issuer configured with a trailing slash, and a
            # localpart from a filter chain.
            _provider(
                f"{issuer}/",
                "slash",
                "Slash",
                user_mapping_provider={
                    "config": {"localpart_template": "{{ user.email.split('@')[0] | lower }}"}
                },
            ),
            _provider(
                issuer,
                "info",
                "Userinfo",
                user_profile_method="userinfo_endpoint",
                user_mapping_provider=userinfo_mapping,
            ),
        ],
        sso={"client_whitelist": ["https://client.example/"], "update_profile_information": True},
        login_via_existing_session={"enabled": True},
    )


class Browser:
    """Just enough of a browser: cookies (for any host, even an IP), forms, manual redirects."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.login_name = ""
        self.abort = False  # press the provider's "Cancel" instead of signing in
        self.pages: list[str] = []

    async def close(self) -> None:
        await self.session.close()

    async def get(self, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
        resp = await self.session.get(url, allow_redirects=False, **kwargs)
        await resp.read()
        return resp

    async def follow(self, url: str, *, stop_at: str = CALLBACK) -> str:
        """Follow redirects (and the provider's login and consent forms) until a URL starting
        with `stop_at`; returns that URL without requesting it."""
        for _ in range(20):
            if url.startswith(stop_at):
                return url
            resp = await self.get(url)
            if resp.status in (302, 303):
                url = str(resp.url.join(URL(resp.headers["Location"])))
                continue
            text = await resp.text()
            assert resp.status == 200, (resp.status, url, text)
            self.pages.append(text)
            url = await self._submit(resp, text)
        raise AssertionError("too many hops")

    async def _submit(self, page: aiohttp.ClientResponse, text: str) -> str:
        if self.abort:
            cancel = re.search(r'href="([^"]*/abort)"', text)
            assert cancel, text
            return str(page.url.join(URL(unescape(cancel.group(1)))))
        action = re.search(r'<form[^>]*action="([^"]+)"', text)
        assert action, text
        fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', text))
        if 'name="login"' in text:
            fields.update(login=self.login_name, password="any")
        resp = await self.session.post(
            page.url.join(URL(unescape(action.group(1)))), data=fields, allow_redirects=False
        )
        await resp.read()
        assert resp.status in (302, 303), (resp.status, await resp.text())
        return str(resp.url.join(URL(resp.headers["Location"])))

    def cookie(self, name: str) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@pytest.fixture
async def browser() -> Any:
    b = Browser()
    yield b
    await b.close()


def start_url(idp: str = "oidc-school", client_url: str = CLIENT_URL) -> str:
    return f"{HS_URL}/_matrix/client/v3/login/sso/redirect/{idp}?redirectUrl={quote(client_url, safe='')}"


async def to_callback(
    browser: Browser, name: str, idp: str = "oidc-school", client_url: str = CLIENT_URL
) -> str:
    """The redirect and the provider's pages; returns the callback URL, not yet requested."""
    browser.login_name = name
    resp = await browser.get(start_url(idp, client_url))
    assert resp.status == 302, await resp.text()
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["redirect_uri"] == [CALLBACK] and query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"]  # the provider announces PKCE
    return await browser.follow(resp.headers["Location"])


async def sso_login(
    browser: Browser, name: str, idp: str = "oidc-school", client_url: str = CLIENT_URL
) -> Any:
    """Run the browser part; returns the callback's response."""
    return await browser.get(await to_callback(browser, name, idp, client_url))


def login_token_of(resp: Any) -> str:
    assert resp.status == 302, resp.status
    location = resp.headers["Location"]
    assert location.startswith(CLIENT_URL + "?")
    return parse_qs(urlsplit(location).query)["loginToken"][0]


async def token_login(hs: Any, token: str, **extra: Any) -> Any:
    return await hs.post("/_matrix/client/v3/login", json={"type": "m.login.token", "token": token, **extra})


async def sso_user(hs: Any, name: str, idp: str = "oidc-school") -> dict[str, Any]:
    """A fresh browser signs `name` in through SSO; returns the login body."""
    b = Browser()
    try:
        resp = await token_login(hs, login_token_of(await sso_login(b, name, idp)))
        body = await resp.json()
        assert resp.status == 200, body
        return dict(body)
    finally:
        await b.close()


async def set_at_provider(hs: Any, account: str, **claims: str) -> None:
    """Change what the provider says of `account` (empty: back to its defaults)."""
    async with aiohttp.ClientSession() as control:
        resp = await control.get(f"{hs.issuer}/test/set", params={"account": account, **claims})
        assert resp.status == 200


async def admin_view(hs: Any, user_id: str) -> dict[str, Any]:
    admin = await register(hs, admin=True)
    resp = await hs.get(f"/_synapse/admin/v2/users/{user_id}", headers=auth(admin["access_token"]))
    assert resp.status == 200
    return dict(await resp.json())


# -- discovery ---------------------------------------------------------------------------------


async def test_login_flows_list_the_providers_as_element_reads_them(hs: Any) -> None:
    resp = await hs.get("/_matrix/client/v3/login")
    assert resp.status == 200
    body = await resp.json()
    types = [f["type"] for f in body["flows"]]
    assert types == ["m.login.sso", "m.login.token", "m.login.password", "m.login.application_service"]
    assert body["flows"][1] == {"type": "m.login.token", "get_login_token": True}
    sso = next(f for f in body["flows"] if f["type"] == "m.login.sso")
    assert sso["identity_providers"] == [
        {"id": "oidc-school", "name": "School account", "brand": "keycloak"},
        {"id": "oidc-linking", "name": "Linking"},
        {"id": "oidc-staff", "name": "Staff only"},
        {"id": "oidc-closed", "name": "Closed"},
        {"id": "oidc-slash", "name": "Slash"},
        {"id": "oidc-info", "name": "Userinfo"},
    ]


# -- login -------------------------------------------------------------------------------------


async def test_full_sso_login_creates_the_account(hs: Any, browser: Browser) -> None:
    resp = await sso_login(browser, "kim.minjun")
    assert resp.headers["Cache-Control"] == "no-store"
    token = login_token_of(resp)
    assert token.startswith("syl_")
    resp = await token_login(hs, token, initial_device_display_name="Phone")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["user_id"] == "@kim.minjun:test.local" and body["access_token"]
    whoami = await (
        await hs.get("/_matrix/client/v3/account/whoami", headers=auth(body["access_token"]))
    ).json()
    assert whoami["user_id"] == "@kim.minjun:test.local"
    profile = await (await hs.get("/_matrix/client/v3/profile/@kim.minjun:test.local")).json()
    assert profile["displayname"] == "김민준"
    # a login token works once
    resp = await token_login(hs, token)
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    view = await admin_view(hs, "@kim.minjun:test.local")
    assert [t["address"] for t in view["threepids"]] == ["minjun.kim@school.example"]
    assert view["external_ids"] == [{"auth_provider": "oidc-school", "external_id": "kim.minjun"}]
    # Signing in again, in another browser, after the provider renamed the user: the account is
    # found through the subject, not the name.
    await set_at_provider(hs, "kim.minjun", preferred_username="minjun.renamed", name="Minjun Kim")
    try:
        again = await sso_user(hs, "kim.minjun")
    finally:
        await set_at_provider(hs, "kim.minjun")  # the provider outlives the test
    assert again["user_id"] == "@kim.minjun:test.local" and again["device_id"] != body["device_id"]
    assert await services_of(hs).users.get_user("@minjun.renamed:test.local") is None
    # sso.update_profile_information: the provider's new display name is taken on.
    profile = await (await hs.get("/_matrix/client/v3/profile/@kim.minjun:test.local")).json()
    assert profile["displayname"] == "Minjun Kim"


async def test_attribute_requirements(hs: Any) -> None:
    # The "staff" provider requires groups to contain "staff".
    assert (await sso_user(hs, "kim.minjun", idp="oidc-staff"))["user_id"] == "@kim.minjun:test.local"
    b = Browser()
    try:
        resp = await sso_login(b, "pupil", idp="oidc-staff")
        assert resp.status == 403 and "not authorised to log in here" in await resp.text()
    finally:
        await b.close()
    assert await services_of(hs).users.get_user("@pupil:test.local") is None


async def test_provider_without_registration_only_signs_in_linked_accounts(hs: Any) -> None:
    b = Browser()
    try:
        resp = await sso_login(b, "newcomer", idp="oidc-closed")
        assert resp.status == 403 and "registrations are disabled" in await resp.text()
    finally:
        await b.close()
    assert await services_of(hs).users.get_user("@newcomer:test.local") is None
    # An existing account of that name is still linked when allow_existing_users is on.
    await register(hs, "teacher", password="pw-teacher")
    assert (await sso_user(hs, "teacher", idp="oidc-closed"))["user_id"] == "@teacher:test.local"


async def test_concurrent_first_logins_make_one_account(hs: Any) -> None:
    browsers = [Browser(), Browser()]
    try:
        callbacks = [await to_callback(b, "two.tabs") for b in browsers]
        answers = await asyncio.gather(*(b.get(cb) for b, cb in zip(browsers, callbacks, strict=True)))
        tokens = [login_token_of(a) for a in answers]
    finally:
        for b in browsers:
            await b.close()
    users = {(await (await token_login(hs, t)).json())["user_id"] for t in tokens}
    assert users == {"@two.tabs:test.local"}
    assert await services_of(hs).users.get_user("@two.tabs1:test.local") is None


async def test_names_that_are_no_localpart_are_mapped_as_synapse_does(hs: Any) -> None:
    assert (await sso_user(hs, "Park Teacher"))["user_id"] == "@park=20teacher:test.local"
    assert (await sso_user(hs, "_Under_Score"))["user_id"] == "@=5funder_score:test.local"


async def test_names_that_cannot_be_a_user_id_are_refused(hs: Any, browser: Browser) -> None:
    resp = await sso_login(browser, "x" * 300)  # too long for a user id, even once mapped
    assert resp.status == 400 and "cannot be used here" in await resp.text()


async def test_issuer_with_trailing_slash_and_template_expressions(hs: Any) -> None:
    body = await sso_user(hs, "Park Teacher", idp="oidc-slash")
    assert body["user_id"] == "@jihoon.park:test.local"  # from jihoon.park@school.example
    # No display name template: the localpart stays the display name.
    profile = await (await hs.get("/_matrix/client/v3/profile/@jihoon.park:test.local")).json()
    assert profile["displayname"] == "jihoon.park"


async def test_userinfo_endpoint_profile_method(hs: Any) -> None:
    body = await sso_user(hs, "lee.userinfo", idp="oidc-info")
    assert body["user_id"] == "@lee.userinfo:test.local"
    profile = await (await hs.get("/_matrix/client/v3/profile/@lee.userinfo:test.local")).json()
    # `nickname` is only in the userinfo answer: it was read there.
    assert profile["displayname"] == "lee.userinfo (from userinfo)"


async def test_taken_name_is_refused_unless_existing_users_are_allowed(hs: Any) -> None:
    local = await register(hs, "existing", password="local-pw")
    b = Browser()
    try:
        resp = await sso_login(b, "existing")
        assert resp.status == 409 and "already taken" in await resp.text()
    finally:
        await b.close()
    assert (await admin_view(hs, local["user_id"]))["external_ids"] == []
    # Another subject whose name maps onto an SSO user's is refused too.
    await sso_user(hs, "twin")
    await set_at_provider(hs, "twin.other", preferred_username="Twin")
    b = Browser()
    try:
        resp = await sso_login(b, "twin.other")
        assert resp.status == 409 and "twin is already taken" in await resp.text()
    finally:
        await set_at_provider(hs, "twin.other")
        await b.close()
    # A provider configured with allow_existing_users links the existing account instead.
    assert (await sso_user(hs, "existing", idp="oidc-linking"))["user_id"] == "@existing:test.local"
    linked = await admin_view(hs, local["user_id"])
    assert [e["auth_provider"] for e in linked["external_ids"]] == ["oidc-linking"]
    # The local password still works for the linked account.
    resp = await hs.post(
        "/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "existing"},
              "password": "local-pw"},
    )  # fmt: skip
    assert resp.status == 200


async def test_deactivated_account_cannot_sign_in(hs: Any) -> None:
    user = await sso_user(hs, "leaver")
    admin = await register(hs, admin=True)
    resp = await hs.post(
        f"/_synapse/admin/v1/deactivate/{user['user_id']}", json={}, headers=auth(admin["access_token"])
    )
    assert resp.status == 200
    b = Browser()
    try:
        resp = await sso_login(b, "leaver")
        assert resp.status == 403 and "deactivated" in await resp.text()
    finally:
        await b.close()


async def test_untrusted_client_url_gets_a_confirmation_page(hs: Any, browser: Browser) -> None:
    resp = await sso_login(browser, "someone", client_url="https://elsewhere.example/cb?x=1")
    assert resp.status == 200
    page = await resp.text()
    assert "elsewhere.example" in page
    link = unescape(re.search(r'<a href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert link.startswith("https://elsewhere.example/cb?x=1&loginToken=")
    token = parse_qs(urlsplit(link).query)["loginToken"][0]
    assert (await (await token_login(hs, token)).json())["user_id"] == "@someone:test.local"


async def test_login_survives_a_restart(
    engine_config: Callable[..., HomeserverConfig], aiohttp_client: Any, issuer: str
) -> None:
    """Nothing of a login in progress lives in one process: the session is the signed cookie,
    used states and login tokens are in the database. A restart between the redirect and the
    callback, or before the client redeems its token, loses nothing (and any worker could take
    the callback)."""
    config = sso_config(engine_config, issuer)
    first = await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})
    b = Browser()
    try:
        callback = await to_callback(b, "restarter")
        await first.close()
        second = await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})
        token = login_token_of(await b.get(callback))
        await second.close()
        third = await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})
        assert (await (await token_login(third, token)).json())["user_id"] == "@restarter:test.local"
    finally:
        await b.close()


async def test_replay_after_a_restart_is_refused(
    engine_config: Callable[..., HomeserverConfig], aiohttp_client: Any, issuer: str
) -> None:
    config = sso_config(engine_config, issuer)
    first = await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})
    b = Browser()
    try:
        callback = await to_callback(b, "replay.restart")
        cookie = b.cookie("oidc_session")
        login_token_of(await b.get(callback))
        await first.close()
        second = await aiohttp_client(create_app_from_config(config), server_kwargs={"port": HS_PORT})
        resp = await second.get(
            callback.removeprefix(HS_URL), allow_redirects=False, headers={"Cookie": f"oidc_session={cookie}"}
        )
        assert resp.status == 400 and "already completed" in await resp.text()
    finally:
        await b.close()


async def test_login_token_expires(hs: Any, browser: Browser) -> None:
    token = login_token_of(await sso_login(browser, "slowpoke"))
    hs.clock.advance(2 * MINUTE + 1)
    resp = await token_login(hs, token)
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")


async def test_bad_login_tokens(hs: Any) -> None:
    resp = await token_login(hs, "syl_made-up")
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    resp = await hs.post("/_matrix/client/v3/login", json={"type": "m.login.token"})
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")
    resp = await hs.post("/_matrix/client/v3/login", json={"type": "m.login.token", "token": 5})
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")


# -- the callback refuses what it cannot trust ----------------------------------------------------


async def test_callback_without_or_with_a_tampered_cookie(hs: Any, browser: Browser) -> None:
    callback = await to_callback(browser, "cookieless")
    async with aiohttp.ClientSession() as bare:  # another browser: no session cookie
        resp = await bare.get(callback, allow_redirects=False)
        assert resp.status == 400 and "no session" in await resp.text()
    cookie = browser.cookie("oidc_session")
    assert cookie is not None
    payload, _, mac = cookie.partition(".")
    for forged in ("abc.def", payload + "." + mac[::-1], payload[:-2] + "xx." + mac):
        async with aiohttp.ClientSession() as other:
            resp = await other.get(
                callback, allow_redirects=False, headers={"Cookie": f"oidc_session={forged}"}
            )
            assert resp.status == 400 and "invalid or has expired" in await resp.text()
    # The right browser still completes it.
    login_token_of(await browser.get(callback))


async def test_callback_with_another_state_is_refused(hs: Any, browser: Browser) -> None:
    callback = await to_callback(browser, "stateful")
    resp = await browser.get(re.sub(r"state=[^&]+", "state=forged", callback))
    assert resp.status == 400 and "state" in await resp.text()
    resp = await browser.get(re.sub(r"[?&]state=[^&]+", "", callback))
    assert resp.status == 400


async def test_replayed_callback_is_refused(hs: Any, browser: Browser) -> None:
    callback = await to_callback(browser, "replayer")
    cookie = browser.cookie("oidc_session")
    login_token_of(await browser.get(callback))
    assert browser.cookie("oidc_session") is None  # cleared by the callback
    # Someone who copied the cookie and the callback URL gets nothing.
    async with aiohttp.ClientSession() as thief:
        resp = await thief.get(callback, allow_redirects=False, headers={"Cookie": f"oidc_session={cookie}"})
        assert resp.status == 400 and "already completed" in await resp.text()


async def test_session_cookie_expires(hs: Any, browser: Browser) -> None:
    callback = await to_callback(browser, "dawdler")
    hs.clock.advance(10 * MINUTE + 1)
    resp = await browser.get(callback)
    assert resp.status == 400 and "expired" in await resp.text()


async def test_provider_error_is_shown(hs: Any, browser: Browser) -> None:
    browser.abort = True  # the user presses the provider's Cancel link
    callback = await to_callback(browser, "canceller")
    assert "error=access_denied" in callback
    resp = await browser.get(callback)
    assert resp.status == 400
    assert "refused the login: End-User aborted interaction" in await resp.text()


async def test_redirect_errors(hs: Any) -> None:
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect/oidc-nope?redirectUrl=https://client.example/")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect/oidc-school")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")
    for bad in ("javascript:alert(1)", "/relative", "https://"):
        resp = await hs.get(f"/_matrix/client/v3/login/sso/redirect/oidc-school?redirectUrl={quote(bad)}")
        assert (resp.status, (await resp.json())["errcode"]) == (400, "M_INVALID_PARAM"), bad
    # Several providers: the path must name one.
    resp = await hs.get("/_matrix/client/v3/login/sso/redirect?redirectUrl=https://client.example/")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")
    resp = await hs.get("/_synapse/client/oidc/callback?code=x&state=y")
    assert resp.status == 400
    resp = await hs.get("/_synapse/client/oidc/callback?error=access_denied&error_description=%3Cb%3Eno")
    text = await resp.text()
    assert resp.status == 400 and "refused" in text and "&lt;b&gt;no" in text


async def test_without_sso_the_endpoints_are_unrecognised(client: Any) -> None:
    resp = await client.get("/_matrix/client/v3/login/sso/redirect?redirectUrl=https://x.example/")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    resp = await client.get("/_matrix/client/v3/auth/m.login.sso/fallback/web?session=x")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    flows = [f["type"] for f in (await (await client.get("/_matrix/client/v3/login")).json())["flows"]]
    assert "m.login.sso" not in flows and "m.login.token" not in flows


# -- user-interactive auth through SSO -----------------------------------------------------------


async def _uia_through_sso(hs: Any, browser: Browser, session: str, name: str) -> Any:
    """Open the fallback page, pick the provider, sign in there; returns the callback's answer."""
    fallback = f"{HS_URL}/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}"
    resp = await browser.get(fallback)
    page = await resp.text()
    assert resp.status == 200, page
    assert "sign in another device" in page and "Continue with School account" in page
    link = unescape(re.search(r'<a href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    resp = await browser.get(str(URL(fallback).join(URL(link))))
    assert resp.status == 302, await resp.text()
    browser.login_name = name
    return await browser.get(await browser.follow(resp.headers["Location"]))


async def test_sso_only_user_confirms_with_sso(hs: Any, browser: Browser) -> None:
    user = await sso_user(hs, "ssoonly")
    headers = auth(user["access_token"])
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=headers)
    challenge = await resp.json()
    assert resp.status == 401
    assert challenge["flows"] == [{"stages": ["m.login.sso"]}]  # no password on this account
    session = challenge["session"]
    # Not done yet: naming the stage, or just the session, gets the challenge again.
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token", json={"auth": {"session": session}}, headers=headers
    )
    assert resp.status == 401
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token", json={"auth": {"type": "m.login.sso", "session": session}},
        headers=headers,
    )  # fmt: skip
    assert resp.status == 401
    done = await _uia_through_sso(hs, browser, session, "ssoonly")
    page = await done.text()
    assert done.status == 200 and 'window.opener.postMessage("authDone", "*")' in page
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token", json={"auth": {"session": session}}, headers=headers
    )
    body = await resp.json()
    assert resp.status == 200, body
    new = await (await token_login(hs, body["login_token"])).json()
    assert new["user_id"] == user["user_id"]
    # The session is used up.
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token", json={"auth": {"session": session}}, headers=headers
    )
    assert resp.status == 400


async def test_sso_uia_as_another_user_fails(hs: Any, browser: Browser) -> None:
    user = await sso_user(hs, "victim")
    await sso_user(hs, "intruder")
    headers = auth(user["access_token"])
    resp = await hs.delete(f"/_matrix/client/v3/devices/{user['device_id']}", json={}, headers=headers)
    session = (await resp.json())["session"]
    done = await _uia_through_sso_any(browser, session, "intruder")
    assert done.status == 200 and "not @victim:test.local" in await done.text()
    resp = await hs.delete(
        f"/_matrix/client/v3/devices/{user['device_id']}",
        json={"auth": {"session": session}},
        headers=headers,
    )
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    # A subject that never signed in here is no one either.
    resp = await hs.delete(f"/_matrix/client/v3/devices/{user['device_id']}", json={}, headers=headers)
    session = (await resp.json())["session"]
    b2 = Browser()
    try:
        done = await _uia_through_sso_any(b2, session, "stranger")
        assert "not @victim:test.local" in await done.text()
    finally:
        await b2.close()
    assert await services_of(hs).users.get_user("@stranger:test.local") is None


async def _uia_through_sso_any(browser: Browser, session: str, name: str) -> Any:
    fallback = f"{HS_URL}/_matrix/client/v3/auth/m.login.sso/fallback/web?session={session}"
    page = await (await browser.get(fallback)).text()
    assert "remove devices from your account" in page
    link = unescape(re.search(r'<a href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    resp = await browser.get(str(URL(fallback).join(URL(link))))
    browser.login_name = name
    return await browser.get(await browser.follow(resp.headers["Location"]))


async def test_linked_password_user_gets_both_flows(hs: Any) -> None:
    local = await register(hs, "both", password="pw-both")
    await sso_user(hs, "both", idp="oidc-linking")
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=auth(local["access_token"]))
    assert (await resp.json())["flows"] == [{"stages": ["m.login.password"]}, {"stages": ["m.login.sso"]}]
    plain = await register(hs, "plain", password="pw-plain")
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=auth(plain["access_token"]))
    body = await resp.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    # A password-only account has no SSO fallback to go through.
    resp = await hs.get(f"/_matrix/client/v3/auth/m.login.sso/fallback/web?session={body['session']}")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_UNKNOWN")
    # ... and cannot claim the stage by naming it.
    resp = await hs.post(
        "/_matrix/client/v1/login/get_token",
        json={"auth": {"type": "m.login.sso", "session": body["session"]}},
        headers=auth(plain["access_token"]),
    )
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_UNRECOGNIZED")


async def test_fallback_page_errors(hs: Any) -> None:
    user = await sso_user(hs, "fallbackerr")
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=auth(user["access_token"]))
    session = (await resp.json())["session"]
    base = "/_matrix/client/v3/auth/m.login.sso/fallback/web"
    resp = await hs.get(base)
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_MISSING_PARAM")
    resp = await hs.get(f"{base}?session=unknown")
    assert (resp.status, (await resp.json())["errcode"]) == (400, "M_UNKNOWN")
    # Only the user's own providers: it never signed in with oidc-linking.
    resp = await hs.get(f"{base}?session={session}&idp_id=oidc-linking")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_NOT_FOUND")
    resp = await hs.get(f"/_matrix/client/v3/auth/m.login.recaptcha/fallback/web?session={session}")
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")


# -- POST /login/get_token (MSC3882) ----------------------------------------------------------------


async def test_get_login_token_signs_in_another_device(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, login_via_existing_session={"enabled": True, "token_timeout": "1m"})
    clock = FakeClock(int(time.time() * 1000))
    hs = await aiohttp_client(create_app_from_config(config, clock=clock))
    user = await register(hs, "phoneuser", password="pw-123")
    headers = auth(user["access_token"])
    caps = await (await hs.get("/_matrix/client/v3/capabilities", headers=headers)).json()
    assert caps["capabilities"]["m.get_login_token"] == {"enabled": True}
    versions = await (await hs.get("/_matrix/client/versions")).json()
    assert versions["unstable_features"]["org.matrix.msc3882"] is True
    flows = (await (await hs.get("/_matrix/client/v3/login")).json())["flows"]
    assert [f["type"] for f in flows] == ["m.login.token", "m.login.password", "m.login.application_service"]
    assert flows[0]["get_login_token"] is True

    async def get_token(password: str) -> Any:
        resp = await hs.post("/_matrix/client/v1/login/get_token", json={}, headers=headers)
        assert resp.status == 401
        session = (await resp.json())["session"]
        return await hs.post(
            "/_matrix/client/v1/login/get_token",
            json={
                "auth": {
                    "type": "m.login.password",
                    "identifier": {"type": "m.id.user", "user": "phoneuser"},
                    "password": password,
                    "session": session,
                }
            },
            headers=headers,
        )

    resp = await get_token("wrong")
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_FORBIDDEN")
    resp = await get_token("pw-123")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["expires_in_ms"] == 60_000
    resp = await token_login(hs, body["login_token"])
    new = await resp.json()
    assert resp.status == 200 and new["user_id"] == user["user_id"] and new["device_id"] != user["device_id"]
    # Expiry: a token unused after token_timeout is refused.
    body = await (await get_token("pw-123")).json()
    clock.advance(60_001)
    resp = await token_login(hs, body["login_token"])
    assert (resp.status, (await resp.json())["errcode"]) == (403, "M_FORBIDDEN")
    # The unstable MSC3882 path is the same endpoint.
    resp = await hs.post(
        "/_matrix/client/unstable/org.matrix.msc3882/login/get_token", json={}, headers=headers
    )
    assert resp.status == 401
    resp = await hs.post("/_matrix/client/v1/login/get_token", json={})
    assert (resp.status, (await resp.json())["errcode"]) == (401, "M_MISSING_TOKEN")


async def test_get_login_token_is_off_by_default(client: Any) -> None:
    user = await register(client)
    resp = await client.post(
        "/_matrix/client/v1/login/get_token", json={}, headers=auth(user["access_token"])
    )
    assert (resp.status, (await resp.json())["errcode"]) == (404, "M_UNRECOGNIZED")
    caps = await (
        await client.get("/_matrix/client/v3/capabilities", headers=auth(user["access_token"]))
    ).json()
    assert caps["capabilities"]["m.get_login_token"] == {"enabled": False}
    versions = await (await client.get("/_matrix/client/versions")).json()
    assert versions["unstable_features"]["org.matrix.msc3882"] is False
