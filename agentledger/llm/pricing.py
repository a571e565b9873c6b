"""What an LLM call cost, in USD, and whether that is known at all.

Prices come from ``genai-prices`` (pydantic's price database, bundled in its wheel and
read offline; upgrading the package brings new prices), under per-model overrides: a
prices file (``AGENTLEDGER_PRICES_FILE``, TOML ``[models."name"]``) and a workflow's
``prices:`` block, which is how an alias (an Ollama tag, a LiteLLM route) gets a price.

Which provider's price list a call is looked up in follows from where the call went, never
from the model's name alone::

    provider  base_url                          priced as
    azure     (any)                             Azure, by the model the response reports
    openai    none / api.openai.com             OpenAI
    openai    another host genai-prices knows   that provider (e.g. Groq, OpenRouter)
    openai    any other host (vLLM, Ollama ...)  unpriced unless an override names it

So ``gpt-4o`` served by a local proxy is *unpriced*, not charged OpenAI's price. An
unpriced call costs 0 and says so (``PriceQuote.priced`` false); what a task with a cost
budget does about it is the runtime's decision (``limits.unpriced_calls``).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import genai_prices
from pydantic import BaseModel, ConfigDict

from agentledger.llm.base import ChatModel, ModelResponse, ModelSettings
from agentledger.schemas.llm import TokenUsage

log = logging.getLogger(__name__)

_OPENAI_HOSTS = ("api.openai.com",)


class ModelPrice(BaseModel):
    """A price override, in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None

    def cost(self, usage: TokenUsage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = self.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = self.input_per_mtok
        total = (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.output_tokens * self.output_per_mtok
        )
        return round(total / 1_000_000, 10)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    # The offline scripted model costs nothing; every real model is priced by genai-prices.
    "scripted": ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0),
}


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """The cost of one call. ``priced_as`` is the model name the price was found for."""

    cost_usd: float
    priced: bool
    priced_as: str
    source: str  # override | genai-prices | "" (unpriced)


class PriceTable:
    """Prices calls: overrides first, then genai-prices for the provider the call went to.

    ``PriceTable()`` has the defaults; ``PriceTable({...})`` replaces them; ``with_overrides``
    adds a workflow's declared prices on top.
    """

    def __init__(
        self, prices: Mapping[str, ModelPrice] | None = None, *, use_database: bool = True
    ) -> None:
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._use_database = use_database
        self._flagged: set[str] = set()

    @classmethod
    def from_file(cls, path: Path, *, base: Mapping[str, ModelPrice] | None = None) -> PriceTable:
        """Read ``[models."name"] input_per_mtok = .. output_per_mtok = ..`` from a TOML file
        on top of ``base`` (the defaults unless given)."""
        data = tomllib.loads(path.read_text())
        prices = dict(DEFAULT_PRICES if base is None else base)
        for name, spec in data.get("models", {}).items():
            prices[name] = ModelPrice.model_validate(spec)
        return cls(prices)

    def with_overrides(self, prices: Mapping[str, ModelPrice]) -> PriceTable:
        """This table with ``prices`` (a workflow's ``prices:``) winning over it."""
        if not prices:
            return self
        return PriceTable({**self._prices, **prices}, use_database=self._use_database)

    def quote(
        self,
        model: str,
        usage: TokenUsage,
        *,
        provider: str = "openai",
        base_url: str | None = None,
        reported_model: str | None = None,
    ) -> PriceQuote:
        """The cost of a call to ``model`` through ``provider``/``base_url``.

        An override for the configured name wins (so an alias can be declared); on Azure
        the model the response reports is priced, not the deployment name.
        """
        names = [model]
        if provider == "azure" and reported_model and reported_model != model:
            names = [reported_model, model]
        for name in names:
            price = self._prices.get(name)
            if price is not None:
                return PriceQuote(price.cost(usage), True, name, "override")
        if self._use_database:
            for name in names:
                cost = _database_cost(name, usage, provider, base_url)
                if cost is not None:
                    return PriceQuote(cost, True, name, "genai-prices")
        if names[0] not in self._flagged:
            self._flagged.add(names[0])
            log.warning(
                "no price known for model %r (%s%s): its calls are recorded as unpriced",
                names[0],
                provider,
                f" at {base_url}" if base_url else "",
            )
        return PriceQuote(0.0, False, names[0], "")

    def quote_response(self, settings: ModelSettings, response: ModelResponse) -> PriceQuote:
        """The price of ``response``, from a model configured by ``settings``."""
        provider, base_url = price_endpoint(settings)
        return self.quote(
            response.model,
            response.usage,
            provider=provider,
            base_url=base_url,
            reported_model=response.reported_model,
        )

    def known(self, model: str, *, provider: str = "openai", base_url: str | None = None) -> bool:
        """Whether calls to ``model`` there have a price (before any response is seen)."""
        if model in self._prices:
            return True
        return (
            self._use_database
            and _database_cost(model, TokenUsage(), provider, base_url) is not None
        )

    def cost(self, model: str, usage: TokenUsage) -> float:
        """The cost of a call to ``model`` on OpenAI itself (0 when unpriced)."""
        return self.quote(model, usage).cost_usd


def serving_settings(model: ChatModel, configured: ModelSettings) -> ModelSettings:
    """The settings of the model object that actually serves the calls (a model built from
    settings carries them), else the configured ones: prices follow where a call went."""
    actual = getattr(model, "settings", None)
    return actual if isinstance(actual, ModelSettings) else configured


def price_endpoint(settings: ModelSettings) -> tuple[str, str | None]:
    """The provider and base URL a model's calls are priced for. The scripted model stands
    in for the model it names, so it is priced like that model on OpenAI."""
    if settings.provider == "scripted":
        return "openai", None
    return settings.provider, settings.base_url


def pricing_provider(provider: str, base_url: str | None) -> tuple[str | None, str | None]:
    """(genai-prices provider id, or API URL to match a provider by) for where a call went;
    (None, None) when the endpoint is one no price list can speak for."""
    if provider == "azure":
        return "azure", None
    if provider != "openai":
        return None, None
    if base_url is None:
        return "openai", None
    host = (urlsplit(base_url).hostname or "").lower()
    if host in _OPENAI_HOSTS:
        return "openai", None
    if host in ("localhost", "") or host.startswith("127.") or host == "::1":
        return None, None  # a local server: only an override can price it
    return None, base_url


def _database_cost(
    model: str, usage: TokenUsage, provider: str, base_url: str | None
) -> float | None:
    provider_id, api_url = pricing_provider(provider, base_url)
    if provider_id is None and api_url is None:
        return None
    cached = min(usage.cached_tokens, usage.input_tokens)
    tokens = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=cached or None,
    )
    try:
        if provider_id is not None:
            calc = genai_prices.calc_price(tokens, model, provider_id=provider_id)
        else:
            calc = genai_prices.calc_price(tokens, model, provider_api_url=api_url)
    except LookupError:
        return None
    return round(float(calc.total_price), 10)
