"""The client address behind a reverse proxy: right-most untrusted X-Forwarded-For hop."""

from __future__ import annotations

import ipaddress

import pytest

from homeserver.http.forwarded import client_address, parse_hop

PEER = "127.0.0.1"
TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("forwarded_for", "real_ip", "trusted", "expected"),
    [
        # No headers: the peer.
        ([], None, (), PEER),
        # One proxy: the address it appended.
        (["203.0.113.7"], None, (), "203.0.113.7"),
        # A client that sends its own header cannot choose its address: the proxy appends the
        # real one and the right-most entry wins.
        (["6.6.6.6, 203.0.113.7"], None, (), "203.0.113.7"),
        # Several header lines form one list.
        (["6.6.6.6", "203.0.113.7"], None, (), "203.0.113.7"),
        # Trusted proxies in the chain are skipped, from the right.
        (["203.0.113.7, 10.1.2.3"], None, TRUSTED, "203.0.113.7"),
        (["6.6.6.6, 203.0.113.7, 10.1.2.3, 10.9.9.9"], None, TRUSTED, "203.0.113.7"),
        # Only trusted hops: the left-most one.
        (["10.1.1.1, 10.2.2.2"], None, TRUSTED, "10.1.1.1"),
        # Ports and IPv6 forms some proxies send.
        (["203.0.113.7:51234"], None, (), "203.0.113.7"),
        (["[2001:db8::1]:443"], None, (), "2001:db8::1"),
        (["2001:db8::1"], None, (), "2001:db8::1"),
        (["::ffff:203.0.113.7"], None, (), "203.0.113.7"),
        # Garbage written where the proxy's entry should be: fall back to the proxy itself.
        (["203.0.113.7, not-an-ip"], None, (), PEER),
        # Empty entries are ignored.
        (["203.0.113.7, "], None, (), "203.0.113.7"),
        # X-Real-IP when there is no X-Forwarded-For.
        ([], "198.51.100.4", (), "198.51.100.4"),
        (["203.0.113.7"], "198.51.100.4", (), "203.0.113.7"),
        ([], "junk", (), PEER),
    ],
)
def test_client_address(
    forwarded_for: list[str], real_ip: str | None, trusted: tuple[ipaddress.IPv4Network, ...], expected: str
) -> None:
    assert client_address(PEER, forwarded_for, real_ip, trusted) == expected


def test_parse_hop_rejects_names() -> None:
    assert parse_hop("unknown") is None
    assert parse_hop("example.com:80") is None
    assert parse_hop(" 192.0.2.1 ") == ipaddress.ip_address("192.0.2.1")
