"""SSO building blocks without a provider: Synapse's username mapping, the sandboxed templates,
attribute requirements, the signed session cookie."""

from __future__ import annotations

import pytest

from homeserver.config.oidc import AttributeRequirement, OidcMapping
from homeserver.core.clock import FakeClock
from homeserver.services.sso import meets_requirements
from homeserver.sso.mapping import MappingError, map_claims, map_username_to_localpart
from homeserver.sso.session import SESSION_LIFETIME_MS, SessionSigner


@pytest.mark.parametrize(
    ("name", "localpart"),
    [
        # Outputs of Synapse's map_username_to_mxid_localpart (case-insensitive).
        ("kim.minjun", "kim.minjun"),
        ("Kim.MinJun", "kim.minjun"),
        ("kim_minjun", "kim_minjun"),
        ("_kim", "=5fkim"),
        ("Park Teacher", "park=20teacher"),
        ("a=b", "a=3db"),
        ("Ä", "=c3=84"),  # only ASCII is lower-cased; other bytes are escaped as they are
        ("김", "=ea=b9=80"),
        ("john.doe+tag/x-y", "john.doe+tag/x-y"),
    ],
)
def test_username_mapping_matches_synapse(name: str, localpart: str) -> None:
    assert map_username_to_localpart(name) == localpart


def test_templates_render_synapse_examples() -> None:
    azure = OidcMapping(
        localpart_template="{{ user.preferred_username.split('@')[0] }}",
        display_name_template="{{ user.given_name }} {{ user.family_name }}",
        email_template="{{ user.email }}",
    )
    attrs = map_claims(
        azure,
        {"sub": "abc", "preferred_username": "Minjun.Kim@school.example", "given_name": "Minjun",
         "family_name": "Kim", "email": "Minjun.Kim@School.Example"},
    )  # fmt: skip
    assert (attrs.remote_user_id, attrs.localpart, attrs.display_name) == ("abc", "minjun.kim", "Minjun Kim")
    assert attrs.emails == ("minjun.kim@school.example",)
    google = OidcMapping(localpart_template="{{ user.given_name|lower }}", email_template="{{ user.email }}")
    attrs = map_claims(google, {"sub": 123, "given_name": "Jihoon"})
    # A missing claim renders as nothing (no "None"), and a numeric subject becomes a string.
    assert (attrs.remote_user_id, attrs.localpart, attrs.emails) == ("123", "jihoon", ())
    assert map_claims(OidcMapping(subject_claim="id"), {"id": "7"}).localpart is None


def test_templates_are_sandboxed_and_errors_are_mapping_errors() -> None:
    escape = OidcMapping(localpart_template="{{ user.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(MappingError):
        map_claims(escape, {"sub": "x"})
    with pytest.raises(MappingError):
        map_claims(OidcMapping(localpart_template="{{ user.name"), {"sub": "x"})
    with pytest.raises(MappingError, match="'sub'"):
        map_claims(OidcMapping(), {"name": "no subject"})


def test_attribute_requirements() -> None:
    claims = {"groups": ["staff", "teachers"], "department": "science", "verified": True}
    assert meets_requirements(claims, ())
    assert meets_requirements(claims, (AttributeRequirement("groups", "staff"),))
    assert meets_requirements(claims, (AttributeRequirement("department", "science"),))
    assert meets_requirements(claims, (AttributeRequirement("verified"),))  # presence only
    assert meets_requirements(claims, (AttributeRequirement("groups", one_of=("admins", "teachers")),))
    assert not meets_requirements(claims, (AttributeRequirement("groups", "admins"),))
    assert not meets_requirements(claims, (AttributeRequirement("missing"),))
    assert not meets_requirements(
        claims, (AttributeRequirement("groups", "staff"), AttributeRequirement("department", "maths"))
    )


def test_session_cookie_is_signed_and_expires() -> None:
    clock = FakeClock()
    signer = SessionSigner(b"server key", clock)
    cookie = signer.sign({"state": "s1", "idp": "oidc"})
    data = signer.verify(cookie)
    assert data is not None and data["state"] == "s1"
    payload, _, mac = cookie.partition(".")
    assert signer.verify(payload + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B")) is None
    assert signer.verify(payload[:-1] + "." + mac) is None
    assert signer.verify("garbage") is None
    assert SessionSigner(b"another key", clock).verify(cookie) is None
    clock.advance(SESSION_LIFETIME_MS + 1)
    assert signer.verify(cookie) is None
