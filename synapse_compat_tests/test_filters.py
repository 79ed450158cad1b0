"""Filters: POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}."""

from __future__ import annotations

from typing import Any

import pytest

from .client import V3, q
from .harness import Homeserver, User, assert_api_error
from .spec_schema import assert_request_matches_spec, assert_response_matches_spec

UPLOAD = "/user/{userId}/filter"
DOWNLOAD = "/user/{userId}/filter/{filterId}"

SPEC_EXAMPLE: dict[str, Any] = {
    "room": {
        "state": {"types": ["m.room.*"], "not_rooms": ["!726s6s6q:example.com"]},
        "timeline": {
            "limit": 10,
            "types": ["m.room.message"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
        "ephemeral": {
            "types": ["m.receipt", "m.typing"],
            "not_rooms": ["!726s6s6q:example.com"],
            "not_senders": ["@spam:example.com"],
        },
    },
    "presence": {"types": ["m.presence"], "not_senders": ["@alice:example.com"]},
    "event_format": "client",
    "event_fields": ["type", "content", "sender"],
}


def upload(user: User, body: dict[str, Any], owner: str | None = None) -> str:
    assert_request_matches_spec("filter.yaml", UPLOAD, "POST", body)
    resp = user.client.post(f"{V3}/user/{q(owner or user.user_id)}/filter", body)
    filter_id = assert_response_matches_spec(resp, "filter.yaml", UPLOAD)["filter_id"]
    assert isinstance(filter_id, str) and filter_id
    assert not filter_id.startswith("{")  # reserved for inline JSON filters
    return filter_id


def download_path(user_id: str, filter_id: str) -> str:
    return f"{V3}/user/{q(user_id)}/filter/{q(filter_id)}"


@pytest.mark.parametrize(
    "definition",
    [
        SPEC_EXAMPLE,
        {},
        {
            "room": {
                "timeline": {"limit": 1},
                "state": {"lazy_load_members": True, "include_redundant_members": False},
            }
        },
        {"room": {"rooms": ["!a:example.com"], "include_leave": True, "account_data": {"not_types": ["*"]}}},
        {"account_data": {"types": ["m.direct"]}, "event_fields": ["content.body"]},
    ],
    ids=["spec_example", "empty", "lazy_load", "rooms_include_leave", "account_data"],
)
def test_filter_roundtrip(user: User, definition: dict[str, Any]) -> None:
    filter_id = upload(user, definition)
    resp = user.client.get(download_path(user.user_id, filter_id))
    body = assert_response_matches_spec(resp, "filter.yaml", DOWNLOAD)
    assert body == definition


def test_filter_ids_are_distinct(user: User) -> None:
    first = upload(user, {"room": {"timeline": {"limit": 1}}})
    second = upload(user, {"room": {"timeline": {"limit": 2}}})
    assert first != second
    assert user.client.get(download_path(user.user_id, second)).body == {"room": {"timeline": {"limit": 2}}}


def test_filter_unknown_id(user: User) -> None:
    upload(user, {})
    resp = user.client.get(download_path(user.user_id, "987654321"))
    assert_api_error(resp, "filter.yaml", DOWNLOAD, 404, "M_NOT_FOUND")


def test_filter_unknown_non_numeric_id(hs: Homeserver, user: User) -> None:
    resp = user.client.get(download_path(user.user_id, "compat-no-such-filter"))
    if hs.is_synapse and resp.status == 400:
        # Synapse deviation: its filter ids are integers and anything else is 400 M_UNKNOWN
        # ("Invalid filter_id"); the spec documents 404 for an unknown filter.
        assert_api_error(resp, "filter.yaml", DOWNLOAD, 400, "M_UNKNOWN")
        return
    assert_api_error(resp, "filter.yaml", DOWNLOAD, 404, "M_NOT_FOUND")


def test_filter_of_other_user(user: User, other_user: User) -> None:
    filter_id = upload(user, {"room": {"timeline": {"limit": 3}}})
    resp = other_user.client.get(download_path(user.user_id, filter_id))
    # Not documented; 403 M_FORBIDDEN (the catalogue's "forbidden access") as Synapse answers.
    assert_api_error(resp, "filter.yaml", DOWNLOAD, 403, "M_FORBIDDEN")
    # Their own namespace does not contain it either (or holds a different filter).
    resp = other_user.client.get(download_path(other_user.user_id, filter_id))
    assert resp.status == 404 or resp.body != {"room": {"timeline": {"limit": 3}}}


def test_filter_upload_for_other_user(user: User, other_user: User) -> None:
    resp = user.client.post(f"{V3}/user/{q(other_user.user_id)}/filter", {})
    assert_api_error(resp, "filter.yaml", UPLOAD, 403, "M_FORBIDDEN")


@pytest.mark.parametrize(
    "definition",
    [
        {"event_format": "compat_bogus"},
        {"room": {"timeline": {"types": "m.room.message"}}},
        {"event_fields": [5]},
    ],
    ids=["bad_event_format", "types_not_list", "event_fields_not_strings"],
)
def test_filter_invalid(hs: Homeserver, user: User, definition: dict[str, Any]) -> None:
    resp = user.client.post(f"{V3}/user/{q(user.user_id)}/filter", definition)
    # Invalid values for keys: M_BAD_JSON (or M_INVALID_PARAM). Synapse deviation: 400 M_UNKNOWN
    # carrying the JSON-schema validation message.
    codes = (
        ("M_BAD_JSON", "M_INVALID_PARAM", "M_UNKNOWN") if hs.is_synapse else ("M_BAD_JSON", "M_INVALID_PARAM")
    )
    assert_api_error(resp, "filter.yaml", UPLOAD, 400, codes)


@pytest.mark.parametrize(
    "definition",
    [{"room": {"timeline": {"limit": "ten"}}}, {"room": 5}],
    ids=["limit_not_integer", "room_not_object"],
)
def test_filter_invalid_types(hs: Homeserver, user: User, definition: dict[str, Any]) -> None:
    resp = user.client.post(f"{V3}/user/{q(user.user_id)}/filter", definition)
    if hs.is_synapse and resp.status == 500:
        # Synapse bug: these wrongly-typed values crash its filter validation with
        # 500 M_UNKNOWN "Internal server error" instead of a 400.
        assert_api_error(resp, "filter.yaml", UPLOAD, 500, "M_UNKNOWN")
        return
    assert_api_error(resp, "filter.yaml", UPLOAD, 400, ("M_BAD_JSON", "M_INVALID_PARAM"))


def test_filter_not_json(user: User) -> None:
    resp = user.client.post(f"{V3}/user/{q(user.user_id)}/filter", data=b"{filter")
    assert_api_error(resp, "filter.yaml", UPLOAD, 400, "M_NOT_JSON")


def test_filter_requires_token(hs: Homeserver, user: User) -> None:
    resp = hs.client().post(f"{V3}/user/{q(user.user_id)}/filter", {})
    assert_api_error(resp, "filter.yaml", UPLOAD, 401, "M_MISSING_TOKEN")
