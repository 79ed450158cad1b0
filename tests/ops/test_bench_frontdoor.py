"""bench/frontdoor.py renders docker/nginx/matrix.conf for the worker benchmarks: every upstream
on the given loopback ports, the balancing method before the servers and keepalive after them, and
a config nginx accepts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench.frontdoor import TEMPLATE, FrontDoorError, main_conf, render_site
from bench.workers_load import parse_sets
from tests.clients.test_reverse_proxy import _require


def _upstream(text: str, name: str) -> list[str]:
    match = re.search(rf"upstream {name} \{{\n(.*?)\n\}}", text, re.S)
    assert match is not None, name
    return [ln.strip() for ln in match.group(1).splitlines() if ln.strip()]


def test_render_workers() -> None:
    text = render_site(
        TEMPLATE.read_text(), main="127.0.0.1:1001", readers=["127.0.0.1:1002", "127.0.0.1:1003"], listen=1000
    )
    readers = _upstream(text, "matrix_client_readers")
    assert readers[0].startswith("hash ")
    assert readers[1:3] == [
        "server 127.0.0.1:1002 max_fails=1 fail_timeout=10s;",
        "server 127.0.0.1:1003 max_fails=1 fail_timeout=10s;",
    ]
    assert readers[3].startswith("keepalive ")
    for name in ("matrix_main", "matrix_media", "matrix_federation"):
        assert [ln for ln in _upstream(text, name) if ln.startswith("server ")] == ["server 127.0.0.1:1001;"]
    assert "listen 127.0.0.1:1000;" in text
    assert "listen 80;" not in text and "listen 8448;" not in text
    assert not re.search(r"server (main|reader\d|media\d|federation\d):", text)


def test_render_one_process_sends_reads_to_main() -> None:
    text = render_site(TEMPLATE.read_text(), main="127.0.0.1:1001", readers=[], listen=1000)
    servers = [ln for ln in _upstream(text, "matrix_client_readers") if ln.startswith("server ")]
    assert servers == ["server 127.0.0.1:1001 max_fails=1 fail_timeout=10s;"]


def test_render_rejects_a_template_without_the_upstream() -> None:
    with pytest.raises(FrontDoorError):
        render_site("server { listen 80; listen 8448; }", main="127.0.0.1:1", readers=[], listen=2)


def test_nginx_accepts_the_rendered_config(tmp_path: Path) -> None:
    nginx = _require("nginx")
    site = tmp_path / "matrix.conf"
    site.write_text(
        render_site(TEMPLATE.read_text(), main="127.0.0.1:1001", readers=["127.0.0.1:1002"], listen=1000)
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_conf(tmp_path, site, 64))
    check = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_parse_sets() -> None:
    assert parse_sets(["fanout.receivers=50", "rooms.rooms=100", "fanout.senders=2"]) == {
        "fanout": {"receivers": "50", "senders": "2"},
        "rooms": {"rooms": "100"},
    }
    with pytest.raises(SystemExit):
        parse_sets(["receivers=50"])
