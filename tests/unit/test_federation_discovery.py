"""Server name resolution (spec: Resolving server names) with a fake well-known fetcher and SRV."""

from __future__ import annotations

import json

import pytest

from homeserver.core.clock import FakeClock
from homeserver.federation.discovery import (
    WELL_KNOWN_FAILURE_TTL,
    ServerAddress,
    ServerDiscovery,
    WellKnownResponse,
    split_server_name,
)


class FakeWellKnown:
    def __init__(self, answers: dict[str, WellKnownResponse | None] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[str] = []

    async def __call__(self, hostname: str) -> WellKnownResponse | None:
        self.calls.append(hostname)
        return self.answers.get(hostname)


class FakeSrv:
    def __init__(self, records: dict[str, list[tuple[str, int]]]) -> None:
        self.records = records

    async def resolve_srv(self, name: str) -> list[tuple[str, int]]:
        return self.records.get(name, [])


def wk(server: str, cache_control: str | None = None) -> WellKnownResponse:
    return WellKnownResponse(200, json.dumps({"m.server": server}).encode(), cache_control)


async def resolve(name: str, fetch: FakeWellKnown | None = None, srv: FakeSrv | None = None) -> ServerAddress:
    return await ServerDiscovery(fetch or FakeWellKnown(), FakeClock(), srv).resolve(name)


async def test_ip_literals() -> None:
    fetch = FakeWellKnown()
    assert await resolve("1.2.3.4", fetch) == ServerAddress("1.2.3.4", 8448, "1.2.3.4", "1.2.3.4")
    assert await resolve("1.2.3.4:1234", fetch) == ServerAddress("1.2.3.4", 1234, "1.2.3.4:1234", "1.2.3.4")
    assert await resolve("[2001:db8::1]:9000", fetch) == ServerAddress(
        "2001:db8::1", 9000, "[2001:db8::1]:9000", "2001:db8::1"
    )
    assert fetch.calls == []  # no well-known for IP literals


async def test_explicit_port_skips_well_known() -> None:
    fetch = FakeWellKnown({"example.org": wk("elsewhere.example:443")})
    address = await resolve("example.org:8449", fetch)
    assert address == ServerAddress("example.org", 8449, "example.org:8449", "example.org")
    assert fetch.calls == []


async def test_well_known_with_port() -> None:
    fetch = FakeWellKnown({"example.org": wk("matrix.example.org:443")})
    address = await resolve("example.org", fetch)
    assert address == ServerAddress("matrix.example.org", 443, "matrix.example.org:443", "matrix.example.org")


async def test_well_known_without_port() -> None:
    fetch = FakeWellKnown({"example.org": wk("matrix.example.org")})
    address = await resolve("example.org", fetch)
    assert address == ServerAddress("matrix.example.org", 8448, "matrix.example.org", "matrix.example.org")


async def test_well_known_delegating_to_ip_literal() -> None:
    fetch = FakeWellKnown({"example.org": wk("10.0.0.5")})
    assert await resolve("example.org", fetch) == ServerAddress("10.0.0.5", 8448, "10.0.0.5", "10.0.0.5")


async def test_delegated_srv() -> None:
    fetch = FakeWellKnown({"example.org": wk("matrix.example.org")})
    srv = FakeSrv({"_matrix-fed._tcp.matrix.example.org": [("host1.example.net", 8000)]})
    address = await resolve("example.org", fetch, srv)
    # Connect to the SRV target, but Host and certificate are the delegated name.
    assert address == ServerAddress("host1.example.net", 8000, "matrix.example.org", "matrix.example.org")


@pytest.mark.parametrize(
    "failure",
    [
        None,  # unreachable
        WellKnownResponse(404, b"{}", None),
        WellKnownResponse(200, b"not json", None),
        WellKnownResponse(200, b'{"m.server": 5}', None),
        WellKnownResponse(200, b'{"m.server": "bad:port:x"}', None),
    ],
)
async def test_well_known_failure_falls_back(failure: WellKnownResponse | None) -> None:
    fetch = FakeWellKnown({"example.org": failure})
    assert await resolve("example.org", fetch) == ServerAddress(
        "example.org", 8448, "example.org", "example.org"
    )


async def test_srv_without_well_known_and_deprecated_srv() -> None:
    srv = FakeSrv({"_matrix._tcp.example.org": [("old.example.net", 8009)]})
    assert await resolve("example.org", srv=srv) == ServerAddress(
        "old.example.net", 8009, "example.org", "example.org"
    )
    srv = FakeSrv(
        {
            "_matrix-fed._tcp.example.org": [("new.example.net", 8010)],
            "_matrix._tcp.example.org": [("old.example.net", 8009)],
        }
    )
    assert (await resolve("example.org", srv=srv)).host == "new.example.net"


async def test_well_known_is_cached_and_failures_expire() -> None:
    clock = FakeClock()
    fetch = FakeWellKnown({"example.org": wk("m.example.org:443", "max-age=600")})
    discovery = ServerDiscovery(fetch, clock)
    await discovery.resolve("example.org")
    await discovery.resolve("example.org")
    assert fetch.calls == ["example.org"]
    clock.advance(601_000)
    await discovery.resolve("example.org")
    assert fetch.calls == ["example.org", "example.org"]

    fetch.answers["down.example"] = None
    await discovery.resolve("down.example")
    await discovery.resolve("down.example")
    assert fetch.calls.count("down.example") == 1
    clock.advance(WELL_KNOWN_FAILURE_TTL + 1)
    await discovery.resolve("down.example")
    assert fetch.calls.count("down.example") == 2


@pytest.mark.parametrize("bad", ["", "example.org:", "example.org:99999", "example.org:abc", "[::1"])
def test_split_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        split_server_name(bad)


async def test_aiodns_srv_resolver_orders_and_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optional aiodns-backed SRV resolver, against a stand-in aiodns module."""
    import sys
    import types
    from dataclasses import dataclass

    from homeserver.federation.discovery import default_srv_resolver

    @dataclass
    class Answer:
        host: str
        port: int
        priority: int
        weight: int

    class FakeResolver:
        async def query(self, name: str, kind: str) -> list[Answer]:
            assert kind == "SRV"
            if name != "_matrix-fed._tcp.example.org":
                raise OSError("NXDOMAIN")
            return [
                Answer("b.example.net.", 8002, 10, 5),
                Answer("a.example.net.", 8001, 5, 0),
                Answer(".", 1, 0, 0),
            ]

    fake = types.ModuleType("aiodns")
    fake.DNSResolver = FakeResolver  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiodns", fake)
    srv = default_srv_resolver()
    assert srv is not None
    assert await srv.resolve_srv("_matrix-fed._tcp.example.org") == [
        ("a.example.net", 8001),
        ("b.example.net", 8002),
    ]
    assert await srv.resolve_srv("_matrix._tcp.example.org") == []
    monkeypatch.setitem(sys.modules, "aiodns", None)  # not installed
    assert default_srv_resolver() is None
