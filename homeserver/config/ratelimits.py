"""Rate-limit sections (`rc_*`) in Synapse's shapes: ``{per_second: float, burst_count: number}``."""

from __future__ import annotations

from homeserver.config import defaults as d
from homeserver.config.parsing import Section
from homeserver.config.sections import (
    FederationRateLimits,
    InviteRateLimits,
    JoinRateLimits,
    LoginRateLimits,
    PresenceRateLimits,
    RateLimit,
)


def read_rate_limit(parent: Section, key: str, default: RateLimit) -> RateLimit:
    """Missing fields fall back to the default one by one, as in Synapse."""
    sec = parent.section(key)
    return RateLimit(
        per_second=float(sec.get_float("per_second", default.per_second)),
        burst_count=float(sec.get_float("burst_count", default.burst_count, minimum=0)),
    )


def read_optional_rate_limit(parent: Section, key: str, default: RateLimit) -> RateLimit | None:
    if not parent.has(key):
        return None
    return read_rate_limit(parent, key, default)


def read_login(root: Section) -> LoginRateLimits:
    sec = root.section("rc_login")
    return LoginRateLimits(
        address=read_rate_limit(sec, "address", d.RC_LOGIN_ADDRESS),
        account=read_rate_limit(sec, "account", d.RC_LOGIN_ACCOUNT),
        failed_attempts=read_rate_limit(sec, "failed_attempts", d.RC_LOGIN_FAILED_ATTEMPTS),
    )


def read_joins(root: Section) -> JoinRateLimits:
    sec = root.section("rc_joins")
    return JoinRateLimits(
        local=read_rate_limit(sec, "local", d.RC_JOINS_LOCAL),
        remote=read_rate_limit(sec, "remote", d.RC_JOINS_REMOTE),
    )


def read_invites(root: Section) -> InviteRateLimits:
    sec = root.section("rc_invites")
    return InviteRateLimits(
        per_room=read_rate_limit(sec, "per_room", d.RC_INVITES_PER_ROOM),
        per_user=read_rate_limit(sec, "per_user", d.RC_INVITES_PER_USER),
        per_issuer=read_rate_limit(sec, "per_issuer", d.RC_INVITES_PER_ISSUER),
    )


def read_presence(root: Section) -> PresenceRateLimits:
    sec = root.section("rc_presence")
    return PresenceRateLimits(per_user=read_rate_limit(sec, "per_user", d.RC_PRESENCE_PER_USER))


def read_federation(root: Section) -> FederationRateLimits:
    sec = root.section("rc_federation")
    return FederationRateLimits(
        window_size=sec.get_int("window_size", 1000, minimum=1),
        sleep_limit=sec.get_int("sleep_limit", 10, minimum=0),
        sleep_delay=sec.get_int("sleep_delay", 500, minimum=0),
        reject_limit=sec.get_int("reject_limit", 50, minimum=0),
        concurrent=sec.get_int("concurrent", 3, minimum=1),
    )
