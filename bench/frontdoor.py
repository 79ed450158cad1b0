"""The front door of a benchmarked deployment: docker/nginx/matrix.conf under a real nginx.

The compose file's nginx routes as Synapse's worker documentation does (/sync and the read-only
client API to the client_readers, sticky per access token; everything else to main). Here its
upstream host names are replaced with loopback ports, so the benchmark drives exactly the routing
an operator deploys, for ours and for Synapse alike. With no readers (one process) the reader pool
points at main, so both layouts pay the same proxy hop.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "docker" / "nginx" / "matrix.conf"


class FrontDoorError(RuntimeError):
    pass


def _replace_upstream(text: str, upstream: str, servers: list[str]) -> str:
    """Replace the `server ...;` lines of `upstream <name> { ... }` with `servers`."""
    pattern = re.compile(rf"(upstream {upstream} \{{\n)(.*?)(\n\}})", re.S)
    match = pattern.search(text)
    if match is None:
        raise FrontDoorError(f"no upstream {upstream} in the nginx template")
    lines = match.group(2).splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip().startswith("server ")), None)
    if first is None:
        raise FrontDoorError(f"upstream {upstream} has no server line")
    # Keep the template's per-server options (max_fails...) and the directives' order:
    # the balancing method before the servers, keepalive after them.
    options = " ".join(lines[first].strip().rstrip(";").split()[2:])
    new = [f"    server {s}{' ' + options if options else ''};" for s in servers]
    kept = [ln for ln in lines if not ln.strip().startswith("server ")]
    lines = kept[:first] + new + kept[first:]
    return text[: match.start(2)] + "\n".join(lines) + text[match.end(2) :]


def render_site(template: str, *, main: str, readers: list[str], listen: int) -> str:
    """The template with its upstreams on `host:port` addresses and one loopback listener.

    Media and federation go to main (the benchmarked topologies have no such workers); with no
    readers the client_reader pool is main itself.
    """
    text = _replace_upstream(template, "matrix_main", [main])
    text = _replace_upstream(text, "matrix_client_readers", readers or [main])
    text = _replace_upstream(text, "matrix_media", [main])
    text = _replace_upstream(text, "matrix_federation", [main])
    for old, new in (("listen 80;", f"listen 127.0.0.1:{listen};"), ("listen 8448;", "")):
        if old not in text:
            raise FrontDoorError(f"{old!r} not in the nginx template")
        text = text.replace(old, new)
    return text


def main_conf(workdir: Path, site: Path, connections: int) -> str:
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
user root;
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    include {site};
}}
"""


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise FrontDoorError("nginx is not installed (apt-get install nginx-light)")
    return found


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class FrontDoor:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(workdir: Path, *, main: str, readers: list[str], port: int, connections: int = 4096) -> FrontDoor:
    """Run nginx (one worker process, no access log) in front of `main` and `readers`."""
    workdir.mkdir(parents=True, exist_ok=True)
    site = workdir / "matrix.conf"
    site.write_text(render_site(TEMPLATE.read_text(), main=main, readers=readers, listen=port))
    conf = workdir / "nginx.conf"
    conf.write_text(main_conf(workdir, site, connections))
    nginx = _nginx()
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(workdir)], capture_output=True, text=True)
    if check.returncode != 0:
        raise FrontDoorError(check.stderr)
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    door = FrontDoor(port, workdir, proc)
    deadline = time.monotonic() + 30
    while not _listening(port):  # readiness poll
        if proc.poll() is not None or time.monotonic() > deadline:
            door.stop()
            log = workdir / "error.log"
            raise FrontDoorError(log.read_text() if log.exists() else "nginx did not start")
        time.sleep(0.05)
    return door
