"""Retrieval over a room's history: an in-process index (one matrix of unit vectors per room) kept
in step with the vectors stored in the bot's database: rebuilt from it at start, extended as
messages arrive or are backfilled, shrunk when messages are redacted."""

from __future__ import annotations

import numpy as np


class VectorIndex:
    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, np.ndarray]] = {}
        self._matrices: dict[str, tuple[list[str], np.ndarray]] = {}  # cache, dropped on change

    def add(self, room_id: str, event_id: str, vector: np.ndarray) -> None:
        self._rooms.setdefault(room_id, {})[event_id] = np.asarray(vector, dtype=np.float32)
        self._matrices.pop(room_id, None)

    def remove(self, room_id: str, event_id: str) -> bool:
        removed = self._rooms.get(room_id, {}).pop(event_id, None) is not None
        if removed:
            self._matrices.pop(room_id, None)
        return removed

    def __contains__(self, key: tuple[str, str]) -> bool:
        room_id, event_id = key
        return event_id in self._rooms.get(room_id, {})

    def size(self, room_id: str) -> int:
        return len(self._rooms.get(room_id, {}))

    def search(
        self,
        room_id: str,
        query: np.ndarray,
        k: int,
        *,
        exclude: set[str] | frozenset[str] = frozenset(),
        min_score: float = -1.0,
    ) -> list[tuple[str, float]]:
        """The `k` most similar messages of the room (cosine similarity), best first."""
        vectors = self._rooms.get(room_id)
        if not vectors or k <= 0:
            return []
        cached = self._matrices.get(room_id)
        if cached is None:
            ids = list(vectors)
            cached = (ids, np.stack([vectors[i] for i in ids]))
            self._matrices[room_id] = cached
        ids, matrix = cached
        scores = matrix @ np.asarray(query, dtype=np.float32)
        order = np.argsort(-scores)
        results: list[tuple[str, float]] = []
        for position in order:
            event_id = ids[int(position)]
            score = float(scores[int(position)])
            if score < min_score:
                break
            if event_id in exclude:
                continue
            results.append((event_id, score))
            if len(results) == k:
                break
        return results


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).copy()
