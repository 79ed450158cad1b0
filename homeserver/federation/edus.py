"""Inbound EDUs: one handler per EDU type, called by the `/send` transaction handler.

Handlers are registered at start-up by the services that own the data (typing, receipts,
presence, device lists, to-device); `/send` only dispatches. An EDU of an unknown type is
dropped, as the spec allows. A handler's failure is logged and never fails the transaction: EDUs
are best effort, and the PDUs of the same transaction must still be answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

# (origin server name, EDU content) -> None
EduHandler = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class EduRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, EduHandler] = {}

    def register(self, edu_type: str, handler: EduHandler) -> None:
        if edu_type in self._handlers:
            raise ValueError(f"an EDU handler for {edu_type!r} is already registered")
        self._handlers[edu_type] = handler

    def handles(self, edu_type: str) -> bool:
        return edu_type in self._handlers

    async def dispatch(self, origin: str, edu_type: str, content: Any) -> None:
        handler = self._handlers.get(edu_type)
        if handler is None:
            logger.debug("dropping EDU of unknown type %r from %s", edu_type, origin)
            return
        if not isinstance(content, Mapping):
            logger.info("dropping %s EDU from %s: content is not an object", edu_type, origin)
            return
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("handling a %s EDU from %s failed", edu_type, origin)
