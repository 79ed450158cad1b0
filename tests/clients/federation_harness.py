"""Shared pieces for federation tests: a throwaway CA and a leaf certificate for loopback.

Used by the two-process harness (test_federation_tls.py) and by in-process fake remote servers
(tests/api/federation_remote.py). Needs `openssl` (tests/run.sh installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        message = "`openssl` is not installed (tests/run.sh installs it with apt-get)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def make_ca_and_leaf(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA, and a leaf for localhost / 127.0.0.1 signed by it: (ca.pem, chain.pem, key.pem)."""
    openssl = _openssl()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=workdir)

    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test Federation CA",
        "-keyout", "ca.key", "-out", "ca.pem", *ca_ext)  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    )
    (workdir / "leaf.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem")  # fmt: skip
    chain = workdir / "chain.pem"
    chain.write_text((workdir / "leaf.pem").read_text() + (workdir / "ca.pem").read_text())
    return workdir / "ca.pem", chain, workdir / "leaf.key"
