"""Sygnal's config file format: the loader, per-app validation, and the standalone process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from bridges.push_gateway.config import ConfigError, load_config, parse_config
from bridges.push_gateway.server import build_pushkins, find_pushkins

from .fakes import ec_private_pem, service_account

REPO = Path(__file__).resolve().parents[2]

# The shape of Sygnal's sygnal.yaml.sample, with one app of each type enabled.
SAMPLE = """
log:
  setup:
    version: 1
    formatters:
      normal:
        format: "%(asctime)s [%(process)d] %(levelname)-5s %(name)s %(message)s"
    handlers:
      stderr:
        class: "logging.StreamHandler"
        formatter: "normal"
        stream: "ext://sys.stderr"
    loggers:
      sygnal.access:
        propagate: false
        handlers: ["stderr"]
        level: "INFO"
    root:
      handlers: ["stderr"]
      level: "INFO"
    disable_existing_loggers: false
  access:
    x_forwarded_for: false
http:
  bind_addresses: ['127.0.0.1']
  port: 5000
metrics:
  prometheus:
    enabled: false
    address: '127.0.0.1'
    port: 8000
  opentracing:
    enabled: false
    implementation: jaeger
    service_name: sygnal
  sentry:
    enabled: false
apps:
  com.example.myapp.ios:
    type: apns
    keyfile: {p8}
    key_id: MY_KEY_ID
    team_id: MY_TEAM_ID
    topic: MY_TOPIC
    platform: sandbox
    inflight_request_limit: 64
  im.vector.app:
    type: gcm
    api_version: v1
    project_id: project-id
    service_account_file: {sa}
    max_connections: 20
    fcm_options:
      apns:
        payload:
          aps:
            content-available: 1
  "org.example.web.*":
    type: webpush
    vapid_private_key: {vapid}
    vapid_contact_email: push@example.org
    allowed_endpoints:
      - "updates.push.services.mozilla.com"
      - "*.notify.windows.com"
    ttl: 300
"""


@pytest.fixture
def key_files(tmp_path: Path) -> dict[str, Path]:
    p8, vapid = tmp_path / "key.p8", tmp_path / "vapid.pem"
    p8.write_bytes(ec_private_pem(ec.generate_private_key(ec.SECP256R1())))
    vapid.write_bytes(ec_private_pem(ec.generate_private_key(ec.SECP256R1())))
    sa, _ = service_account(tmp_path, "https://oauth2.googleapis.com/token")
    return {"p8": p8, "vapid": vapid, "sa": sa}


def test_sygnal_sample_loads(tmp_path: Path, key_files: dict[str, Path]) -> None:
    path = tmp_path / "sygnal.yaml"
    path.write_text(SAMPLE.format(**key_files))
    config = load_config(path)
    assert config.bind_addresses == ["127.0.0.1"] and config.port == 5000
    assert config.prometheus_enabled is False and config.prometheus_port == 8000
    assert config.log_setup is not None and config.log_setup["version"] == 1
    pushkins = build_pushkins(config)
    assert [(p.name, p.kind) for p in pushkins] == [
        ("com.example.myapp.ios", "apns"),
        ("im.vector.app", "fcm"),
        ("org.example.web.*", "webpush"),
    ]
    apns, fcm, webpush = pushkins
    assert apns.inflight_limit == 64 and apns.endpoint == "https://api.sandbox.push.apple.com"  # type: ignore[attr-defined]
    assert fcm.url == "https://fcm.googleapis.com/v1/projects/project-id/messages:send"  # type: ignore[attr-defined]
    assert webpush.ttl == 300  # type: ignore[attr-defined]
    # Glob app ids: `*` spans dots, the match is anchored.
    assert find_pushkins(pushkins, "org.example.web.firefox") == [webpush]
    assert find_pushkins(pushkins, "org.example.web") == []
    assert find_pushkins(pushkins, "im.vector.app") == [fcm]
    assert find_pushkins(pushkins, "im.vector.app.beta") == []


def test_defaults_match_sygnal() -> None:
    config = parse_config({})
    assert config.bind_addresses == ["127.0.0.1"]
    assert config.port == 5000
    assert config.apps == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"apps": {"com.example": {"type": "pushy"}}},
            r"apps\.com\.example\.type: unknown pushkin type 'pushy'",
        ),
        ({"apps": {"com.example": {"type": "sygnal.custom.Pushkin"}}}, r"apps\.com\.example\.type"),
        ({"apps": {"com.example": {}}}, r"apps\.com\.example\.type: missing"),
        ({"apps": {"com.example": "apns"}}, r"apps\.com\.example: expected a mapping"),
        ({"apps": {"a": {"type": "apns", "inflight_request_limit": 0}}}, r"apps\.a\.inflight_request_limit"),
        ({"http": {"port": "5000"}}, r"http\.port: expected int"),
        ({"http": {"bind_addresses": []}}, r"http\.bind_addresses"),
        ({"metrics": {"prometheus": {"port": True}}}, r"metrics\.prometheus\.port"),
        ({"log": {"setup": "x"}}, r"log\.setup"),
        ([1, 2], "must be a mapping"),
    ],
)
def test_config_errors_name_the_key(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ({"type": "webpush", "vapid_contact_email": "a@b"}, r"apps\.x\.vapid_private_key: required"),
        (
            {"type": "webpush", "vapid_private_key": "/nonexistent.pem", "vapid_contact_email": "a@b"},
            "does not exist",
        ),
        ({"type": "webpush", "vapid_private_key": "{vapid}"}, r"apps\.x\.vapid_contact_email: required"),
        ({"type": "webpush", "vapid_private_key": "{sa}", "vapid_contact_email": "a@b"}, "not a valid VAPID"),
        (
            {"type": "webpush", "vapid_private_key": "{vapid}", "vapid_contact_email": "a@b", "ttl": "1h"},
            r"\.ttl",
        ),
        ({"type": "gcm", "api_key": "legacy"}, r"apps\.x\.api_version: must be 'v1'"),
        (
            {"type": "fcm", "api_version": "v1", "service_account_file": "{sa}"},
            r"apps\.x\.project_id: required",
        ),
        ({"type": "fcm", "api_version": "v1", "project_id": "p"}, r"apps\.x\.service_account_file: required"),
        ({"type": "apns"}, r"apps\.x\.keyfile: required"),
        ({"type": "apns", "keyfile": "{p8}", "team_id": "T", "topic": "t"}, r"apps\.x\.key_id: required"),
        ({"type": "apns", "keyfile": "{p8}", "key_id": "K", "topic": "t"}, r"apps\.x\.team_id: required"),
        ({"type": "apns", "keyfile": "{p8}", "key_id": "K", "team_id": "T"}, r"apps\.x\.topic: required"),
        ({"type": "apns", "keyfile": "{sa}", "key_id": "K", "team_id": "T", "topic": "t"}, "not an ES256"),
        ({"type": "apns", "certfile": "/nonexistent.pem"}, r"apps\.x\.certfile"),
        ({"type": "apns", "keyfile": "{p8}", "platform": "beta"}, r"apps\.x\.platform"),
        (
            {
                "type": "apns",
                "keyfile": "{p8}",
                "key_id": "K",
                "team_id": "T",
                "topic": "t",
                "push_type": "loud",
            },
            r"apps\.x\.push_type",
        ),
    ],
)
def test_pushkin_config_errors_name_the_key(
    key_files: dict[str, Path], app: dict[str, Any], message: str
) -> None:
    app = {k: v.format(**key_files) if isinstance(v, str) else v for k, v in app.items()}
    with pytest.raises(ConfigError, match=message):
        build_pushkins(parse_config({"apps": {"x": app}}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_runs_as_its_own_process(tmp_path: Path, key_files: dict[str, Path]) -> None:
    port, metrics_port = _free_port(), _free_port()
    raw = yaml.safe_load(SAMPLE.format(**key_files))
    raw["http"]["port"] = port
    raw["metrics"]["prometheus"].update(enabled=True, port=metrics_port)
    path = tmp_path / "sygnal.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    check = subprocess.run(
        [sys.executable, "-m", "bridges.push_gateway", "--config", str(path), "--check-config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    raw["apps"]["im.vector.app"]["api_version"] = "legacy"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    check = subprocess.run(
        [sys.executable, "-m", "bridges.push_gateway", "--config", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert check.returncode == 2
    assert "apps.im.vector.app.api_version" in check.stderr and "Traceback" not in check.stderr

    log = (tmp_path / "gateway.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridges.push_gateway", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"gateway exited: {(tmp_path / 'gateway.log').read_text()}")
            try:
                if _get(f"http://127.0.0.1:{port}/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gateway did not start")
        secret = "the secret message body"
        body = {
            "notification": {
                "event_id": "$e",
                "room_id": "!r:example.org",
                "content": {"msgtype": "m.text", "body": secret},
                "devices": [{"app_id": "com.unknown", "pushkey": "pk-unknown"}],
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/_matrix/push/v1/notify",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read()) == {"rejected": ["pk-unknown"]}
        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200
        assert b"sygnal_notifications_received_total 1.0" in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "gateway.log").read_text()
    assert "notify event=$e" in output  # structured line with ids...
    assert secret not in output and "pk-unknown" not in output  # ...but no content, no pushkey
