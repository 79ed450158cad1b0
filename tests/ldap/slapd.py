"""A real OpenLDAP `slapd` on a loopback port, with a school-shaped directory, for tests.

Debian's `slapd` package provides the binary (tests/run.sh installs it); the server runs from a
throwaway directory with an `mdb` database and the memberOf overlay, and is filled through ldap3
as the root DN. Without slapd the tests skip, or fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ldap3
import pytest

BASE = "dc=school,dc=example"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PASSWORD = "root-secret"
BIND_DN = f"cn=matrix-bind,ou=services,{BASE}"
BIND_PASSWORD = "bind-secret"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
MATRIX_USERS = f"cn=matrix-users,{GROUPS}"

# uid -> (cn, mail, password, in the matrix-users group)
PEOPLE_ENTRIES: dict[str, tuple[str, str | None, str, bool]] = {
    "kim.minjun": ("김민준", "minjun.kim@school.example", "minjun-pw", True),
    "lee.seoyeon": ("이서연", "seoyeon.lee@school.example", "seoyeon-pw", True),
    "park.teacher": ("박지훈 선생님", "jihoon.park@school.example", "teacher-pw", True),
    # In the directory but not in the group the filter asks for.
    "outsider": ("Outsider", "outsider@school.example", "outsider-pw", False),
    # A uid that is a valid LDAP value but no valid Matrix localpart.
    "Space Name": ("Space Name", None, "space-pw", True),
    # A user whose uid begins with "a": a `*` in a login name must not match them.
    "alpha": ("Alpha", "alpha@school.example", "alpha-pw", True),
}


def slapd_binary() -> str | None:
    return shutil.which("slapd") or next(
        (p for p in ("/usr/sbin/slapd", "/usr/local/libexec/slapd") if os.path.exists(p)), None
    )


def require_slapd() -> str:
    binary = slapd_binary()
    if binary is None:
        message = "OpenLDAP slapd is not installed (tests/run.sh installs Debian's slapd package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Slapd:
    uri: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def admin(self) -> ldap3.Connection:
        return ldap3.Connection(ldap3.Server(self.uri), ROOT_DN, ROOT_PASSWORD, auto_bind=True)


def _config(workdir: Path) -> Path:
    schema = Path("/etc/ldap/schema")
    conf = workdir / "slapd.conf"
    conf.write_text(
        "\n".join(
            [
                *(f"include {schema / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")),
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "moduleload memberof",
                f"pidfile {workdir / 'slapd.pid'}",
                "database mdb",
                "maxsize 16777216",
                f'suffix "{BASE}"',
                f'rootdn "{ROOT_DN}"',
                f"rootpw {ROOT_PASSWORD}",
                f"directory {workdir / 'db'}",
                "overlay memberof",
                "",
            ]
        )
    )
    (workdir / "db").mkdir()
    return conf


@contextmanager
def running_slapd(workdir: Path) -> Iterator[Slapd]:
    binary = require_slapd()
    port = _free_port()
    uri = f"ldap://127.0.0.1:{port}"
    conf = _config(workdir)
    log = open(workdir / "slapd.log", "wb")  # closed in finally
    process = subprocess.Popen(
        [binary, "-d", "0", "-f", str(conf), "-h", f"{uri}/"], stdout=log, stderr=subprocess.STDOUT
    )
    server = Slapd(uri, port, process)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"slapd exited: {(workdir / 'slapd.log').read_text()[-2000:]}")
            try:
                server.admin().unbind()
                break
            except ldap3.core.exceptions.LDAPException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        populate(server)
        yield server
    finally:
        server.stop()
        log.close()


def populate(server: Slapd) -> None:
    conn = server.admin()
    try:
        conn.add(BASE, ["dcObject", "organization"], {"dc": "school", "o": "Test School"})
        for ou in ("people", "groups", "services"):
            conn.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
        conn.add(
            BIND_DN,
            ["simpleSecurityObject", "organizationalRole"],
            {"cn": "matrix-bind", "userPassword": BIND_PASSWORD},
        )
        members = []
        for uid, (cn, mail, password, member) in PEOPLE_ENTRIES.items():
            dn = person_dn(uid)
            attributes = {"uid": uid, "cn": cn, "sn": cn.split()[0], "userPassword": password}
            if mail:
                attributes["mail"] = mail
            assert conn.add(dn, ["inetOrgPerson"], attributes), conn.result
            if member:
                members.append(dn)
        group = {"cn": "matrix-users", "member": members}
        assert conn.add(MATRIX_USERS, ["groupOfNames"], group), conn.result
    finally:
        conn.unbind()


def person_dn(uid: str) -> str:
    from ldap3.utils.dn import escape_rdn

    return f"uid={escape_rdn(uid)},{PEOPLE}"


def synapse_ldap_module(uri: str, **overrides: object) -> dict[str, object]:
    """The `modules:` entry exactly as a Synapse operator writes it for matrix-synapse-ldap3."""
    config: dict[str, object] = {
        "enabled": True,
        "uri": uri,
        "start_tls": False,
        "base": PEOPLE,
        "attributes": {"uid": "uid", "mail": "mail", "name": "cn"},
        "bind_dn": BIND_DN,
        "bind_password": BIND_PASSWORD,
        "filter": f"(memberOf={MATRIX_USERS})",
    }
    config.update(overrides)
    return {"module": "ldap_auth_provider.LdapAuthProviderModule", "config": config}
