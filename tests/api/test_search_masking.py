"""`search_mask_patterns`: configured regexes mask personal data (Korean phone numbers, resident
registration numbers) in search highlights and result bodies, and nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from homeserver.app import create_app_from_config
from homeserver.config.errors import ConfigError

from ..conftest import make_config
from .compliance_helpers import User

PHONE = r"01[016789]-?\d{3,4}-?\d{4}"
RRN = r"\d{6}-[1-4]\d{6}"


async def test_search_masks_configured_patterns(aiohttp_client: Any, tmp_path: Path) -> None:
    config = make_config(tmp_path, search_mask_patterns=[PHONE, RRN])
    client = await aiohttp_client(create_app_from_config(config))
    alice = await User.new(client, "alice")
    room = await alice.create_room()
    said = await alice.say(room, "학부모 연락처 010-1234-5678, 주민번호 900101-1234567 입니다")

    found = await alice.search("연락처")
    assert [r["result"]["event_id"] for r in found["results"]] == [said]
    assert found["results"][0]["result"]["content"]["body"] == (
        "학부모 연락처 *************, 주민번호 ************** 입니다"
    )
    found = await alice.search("010-1234-5678")
    assert "010-1234-5678" not in found["highlights"]
    assert all("*" in h for h in found["highlights"]) and found["highlights"]

    # Only search results are masked: the room timeline keeps the message as sent.
    chunk = await alice.messages(room)
    assert any(e["content"].get("body", "").startswith("학부모 연락처 010-1234-5678") for e in chunk)


async def test_no_patterns_no_masking(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app_from_config(make_config(tmp_path)))
    alice = await User.new(client, "alice")
    room = await alice.create_room()
    await alice.say(room, "연락처 010-1234-5678")
    found = await alice.search("연락처")
    assert found["results"][0]["result"]["content"]["body"] == "연락처 010-1234-5678"


def test_invalid_pattern_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"search_mask_patterns\[0\]"):
        make_config(tmp_path, search_mask_patterns=["(unclosed"])
