"""Compliance keys: Synapse's `retention` section and `search_mask_patterns` (ours)."""

from __future__ import annotations

import re

from homeserver.config.errors import ConfigError
from homeserver.config.parsing import Section
from homeserver.config.sections import ComplianceConfig, RetentionConfig, RetentionPurgeJob

DAY = 24 * 3600 * 1000


def read_compliance(root: Section) -> ComplianceConfig:
    patterns = root.get_str_list("search_mask_patterns")
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"invalid regular expression: {e}", f"search_mask_patterns[{index}]") from e
    return ComplianceConfig(retention=_retention(root), search_mask_patterns=patterns)


def _retention(root: Section) -> RetentionConfig:
    sec = root.section("retention")
    policy = sec.section("default_policy")
    min_lifetime = policy.get_opt_duration("min_lifetime")
    max_lifetime = policy.get_opt_duration("max_lifetime")
    if min_lifetime is not None and max_lifetime is not None and min_lifetime > max_lifetime:
        raise ConfigError("min_lifetime must not exceed max_lifetime", policy.path)
    lower = sec.get_opt_duration("allowed_lifetime_min")
    upper = sec.get_opt_duration("allowed_lifetime_max")
    if lower is not None and upper is not None and lower > upper:
        raise ConfigError("allowed_lifetime_min must not exceed allowed_lifetime_max", sec.path)
    jobs = tuple(
        RetentionPurgeJob(
            shortest_max_lifetime=job.get_opt_duration("shortest_max_lifetime"),
            longest_max_lifetime=job.get_opt_duration("longest_max_lifetime"),
            interval=job.get_duration("interval", DAY),
        )
        for job in sec.sections("purge_jobs")
    )
    # As Synapse: without purge_jobs, one job covers every room once a day.
    return RetentionConfig(
        enabled=sec.get_bool("enabled", False),
        default_min_lifetime=min_lifetime,
        default_max_lifetime=max_lifetime,
        allowed_lifetime_min=lower,
        allowed_lifetime_max=upper,
        purge_jobs=jobs or (RetentionPurgeJob(None, None, DAY),),
        export_dir=sec.get_opt_str("export_dir"),
    )
