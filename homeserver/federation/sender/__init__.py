"""Outbound federation: per-destination persisted queues of PDUs and EDUs (see sender.py)."""

from homeserver.federation.sender.sender import PERSISTED_EDU_TYPES, FederationSender

__all__ = ["PERSISTED_EDU_TYPES", "FederationSender"]
