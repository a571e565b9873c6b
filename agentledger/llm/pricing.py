"""Token prices per model, in USD per million tokens. Users extend or override in a file."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agentledger.schemas.llm import TokenUsage

log = logging.getLogger(__name__)


class ModelPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "scripted": ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0),
    "gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25),
    "gpt-4o-mini": ModelPrice(
        input_per_mtok=0.15, output_per_mtok=0.6, cached_input_per_mtok=0.075
    ),
    "gpt-4.1": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5),
    "gpt-4.1-mini": ModelPrice(input_per_mtok=0.4, output_per_mtok=1.6, cached_input_per_mtok=0.1),
    "gpt-4.1-nano": ModelPrice(
        input_per_mtok=0.1, output_per_mtok=0.4, cached_input_per_mtok=0.025
    ),
    "o4-mini": ModelPrice(input_per_mtok=1.1, output_per_mtok=4.4, cached_input_per_mtok=0.275),
}


class PriceTable:
    """Looks up a model's price; unknown models cost 0 and are logged once."""

    def __init__(self, prices: dict[str, ModelPrice] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._flagged: set[str] = set()

    @classmethod
    def from_file(cls, path: Path, *, base: dict[str, ModelPrice] | None = None) -> PriceTable:
        """Read ``[models."name"] input_per_mtok = .. output_per_mtok = ..`` from a TOML file
        on top of ``base`` (the defaults unless given)."""
        data = tomllib.loads(path.read_text())
        prices = dict(DEFAULT_PRICES if base is None else base)
        for name, spec in data.get("models", {}).items():
            prices[name] = ModelPrice.model_validate(spec)
        return cls(prices)

    def known(self, model: str) -> bool:
        return model in self._prices

    def cost(self, model: str, usage: TokenUsage) -> float:
        price = self._prices.get(model)
        if price is None:
            if model not in self._flagged:
                self._flagged.add(model)
                log.warning("no price known for model %r: its calls are costed at 0", model)
            return 0.0
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = price.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = price.input_per_mtok
        total = (
            (usage.input_tokens - cached) * price.input_per_mtok
            + cached * cached_rate
            + usage.output_tokens * price.output_per_mtok
        )
        return round(total / 1_000_000, 10)
