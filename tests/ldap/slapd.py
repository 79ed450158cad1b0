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
        populate_school(conn)
    finally:
        conn.unbind()


# The organisation tree the directory sync mirrors (tests/ldap_sync): units with Korean names in
# `description`, people placed in their unit, groups flagged `businessCategory: sync`.
ORG = f"ou=org,{BASE}"
# ou path below ORG (innermost first) -> description
SCHOOL_UNITS: dict[str, str] = {
    "": "한빛고등학교",
    "ou=grade3": "3학년",
    "ou=class1,ou=grade3": "3학년 1반",
    "ou=class2,ou=grade3": "3학년 2반",
    "ou=staff": "교직원",
    "ou=parents": "학부모",
}
# uid -> (unit path below ORG, cn, employeeType, mail, password)
SCHOOL_PEOPLE: dict[str, tuple[str, str, str, str | None, str]] = {
    "s.jiwoo": ("ou=class1,ou=grade3", "최지우", "student", "jiwoo@school.example", "jiwoo-pw"),
    "s.hayoon": ("ou=class1,ou=grade3", "정하윤", "student", None, "hayoon-pw"),
    "s.doyoon": ("ou=class2,ou=grade3", "강도윤", "student", "doyoon@school.example", "doyoon-pw"),
    "s.seojun": ("ou=class2,ou=grade3", "윤서준", "student", None, "seojun-pw"),
    "t.han": ("ou=staff", "한지민 선생님", "teacher", "jimin.han@school.example", "han-pw"),
    "t.oh": ("ou=staff", "오세훈 선생님", "teacher", "sehun.oh@school.example", "oh-pw"),
    "p.kang": ("ou=parents", "강민호", "parent", "minho.kang@example.com", "kang-pw"),
    # no valid Matrix localpart: the sync skips it
    "Bad Name": ("ou=class1,ou=grade3", "Bad Name", "student", None, "bad-pw"),
}
# cn -> (description, member uids, unit path the group feeds or None for a room of its own)
SCHOOL_GROUPS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "homeroom-3-1": ("3학년 1반 담임", ("t.han",), "ou=class1,ou=grade3"),
    "homeroom-3-2": ("3학년 2반 담임", ("t.oh",), "ou=class2,ou=grade3"),
    "parents-3-2": ("3학년 2반 학부모", ("p.kang", "t.oh"), None),
}


def unit_dn(path: str) -> str:
    return f"{path},{ORG}" if path else ORG


def school_person_dn(uid: str) -> str:
    from ldap3.utils.dn import escape_rdn

    return f"uid={escape_rdn(uid)},{unit_dn(SCHOOL_PEOPLE[uid][0])}"


def populate_school(conn: ldap3.Connection) -> None:
    for path, description in sorted(SCHOOL_UNITS.items(), key=lambda item: len(item[0])):
        ou = (path.split(",")[0].split("=")[1]) if path else "org"
        entry = {"ou": ou, "description": description}
        assert conn.add(unit_dn(path), ["organizationalUnit"], entry), conn.result
    for uid, (_path, cn, kind, mail, password) in SCHOOL_PEOPLE.items():
        attributes = {"uid": uid, "cn": cn, "sn": cn[0], "employeeType": kind, "userPassword": password}
        if mail:
            attributes["mail"] = mail
        assert conn.add(school_person_dn(uid), ["inetOrgPerson"], attributes), conn.result
    for cn, (description, uids, unit) in SCHOOL_GROUPS.items():
        attributes = {
            "cn": cn,
            "description": description,
            "businessCategory": "sync",
            "member": [school_person_dn(u) for u in uids],
        }
        if unit is not None:
            attributes["seeAlso"] = unit_dn(unit)
        assert conn.add(f"cn={cn},{GROUPS}", ["groupOfNames"], attributes), conn.result


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
