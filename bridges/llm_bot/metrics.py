"""Usage metrics for admins (served at the bot's `/metrics`): tokens per user and room, requests by
outcome, errors by kind, rate-limit refusals, malformed stream chunks, time to the first token."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "llm_bot_requests_total", "Answers started, by room and outcome", labelnames=["room", "outcome"]
)
TOKENS = Counter(
    "llm_bot_tokens_total",
    "Tokens used, by user, room and kind (prompt / completion)",
    labelnames=["user", "room", "kind"],
)
ERRORS = Counter(
    "llm_bot_backend_errors_total", "Backend failures by backend and kind", labelnames=["backend", "kind"]
)
RATE_LIMITED = Counter(
    "llm_bot_rate_limited_total", "Requests refused by a rate limit or token budget", labelnames=["scope"]
)
MALFORMED_CHUNKS = Counter(
    "llm_bot_malformed_chunks_total",
    "Server-sent-event chunks that could not be used",
    labelnames=["backend"],
)
FIRST_TOKEN_SECONDS = Histogram(
    "llm_bot_first_token_seconds", "Time from the request to the first token", labelnames=["backend"]
)
EDITS = Counter("llm_bot_edits_total", "m.replace edits sent while streaming")
INDEXED = Counter("llm_bot_indexed_messages_total", "Messages embedded into the retrieval index")
