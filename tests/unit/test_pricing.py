"""PriceTable: genai-prices by where the call went, overrides, cached tokens, unpriced models."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agentledger.llm.pricing import DEFAULT_PRICES, ModelPrice, PriceTable
from agentledger.schemas.llm import TokenUsage

MILLION = 1_000_000


def test_known_openai_models_are_priced_from_the_price_database() -> None:
    table = PriceTable()

    assert all(table.known(name) for name in DEFAULT_PRICES)
    assert all(table.known(name) for name in ("gpt-4o", "gpt-4.1-mini", "o4-mini"))
    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION)
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.15 + 0.6)
    assert table.cost("gpt-4o", usage) == pytest.approx(2.5 + 10.0)
    assert table.cost("scripted", usage) == 0.0


def test_cached_tokens_are_priced_at_the_cached_rate() -> None:
    usage = TokenUsage(input_tokens=1000, output_tokens=100, cached_tokens=600)

    cost = PriceTable().cost("gpt-4.1-mini", usage)

    assert cost == pytest.approx((400 * 0.4 + 600 * 0.1 + 100 * 1.6) / MILLION)


def test_cached_tokens_without_a_cached_rate_cost_the_input_rate() -> None:
    table = PriceTable({"local": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)})
    usage = TokenUsage(input_tokens=1000, output_tokens=0, cached_tokens=600)

    assert table.cost("local", usage) == pytest.approx(1000 * 1.0 / MILLION)


def test_cached_tokens_never_exceed_input_tokens() -> None:
    usage = TokenUsage(input_tokens=100, output_tokens=0, cached_tokens=500)

    assert PriceTable().cost("gpt-4o", usage) == pytest.approx(100 * 1.25 / MILLION)


def test_a_toml_file_overrides_and_extends_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."gpt-4o"]\n'
        "input_per_mtok = 5.0\n"
        "output_per_mtok = 20.0\n"
        "\n"
        '[models."llama3.1:8b"]\n'
        "input_per_mtok = 0.0\n"
        "output_per_mtok = 0.0\n"
        "\n"
        '[models."my-finetune"]\n'
        "input_per_mtok = 3.0\n"
        "output_per_mtok = 12.0\n"
        "cached_input_per_mtok = 1.5\n"
    )

    table = PriceTable.from_file(path)

    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION, cached_tokens=MILLION // 2)
    # gpt-4o replaced wholesale: no cached rate in the override, so cached = input rate.
    assert table.cost("gpt-4o", usage) == pytest.approx(5.0 + 20.0)
    assert table.cost("my-finetune", usage) == pytest.approx(1.5 + 0.75 + 12.0)
    assert table.known("llama3.1:8b")
    assert table.cost("llama3.1:8b", usage) == 0.0
    assert table.known("gpt-4o-mini")  # the defaults stay


def test_a_toml_file_over_an_explicit_base(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("[models.extra]\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n")

    table = PriceTable.from_file(path, base={})

    assert table.known("extra")
    assert not table.known("scripted")  # the default override is gone with the base
    assert table.known("gpt-4o")  # the price database is still there


def test_a_bad_price_entry_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("[models.broken]\ninput_per_mtok = 1.0\n")

    with pytest.raises(ValueError, match="output_per_mtok"):
        PriceTable.from_file(path)


def test_unknown_model_is_unpriced_costs_zero_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentledger.llm.pricing")
    table = PriceTable()
    usage = TokenUsage(input_tokens=100, output_tokens=100)

    quotes = [table.quote("mystery-model", usage) for _ in range(3)]
    table.cost("another-mystery", usage)

    assert {(q.cost_usd, q.priced, q.source) for q in quotes} == {(0.0, False, "")}
    messages = [r.getMessage() for r in caplog.records if r.name == "agentledger.llm.pricing"]
    assert len(messages) == 2
    assert "mystery-model" in messages[0] and "unpriced" in messages[0]
    assert "another-mystery" in messages[1]


def test_an_openai_model_name_served_elsewhere_is_not_charged_openais_price() -> None:
    table = PriceTable()
    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION)

    at_openai = table.quote("gpt-4o-mini", usage)
    local = table.quote("gpt-4o-mini", usage, base_url="http://127.0.0.1:8000/v1")
    proxy = table.quote("gpt-4o-mini", usage, base_url="http://litellm.internal:4000/v1")

    assert (at_openai.priced, at_openai.source) == (True, "genai-prices")
    assert at_openai.cost_usd == pytest.approx(0.15 + 0.6)
    assert (local.priced, local.cost_usd) == (False, 0.0)
    assert (proxy.priced, proxy.cost_usd) == (False, 0.0)
    assert not table.known("gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
    assert table.known("gpt-4o-mini")


def test_a_declared_price_prices_an_alias_wherever_it_is_served() -> None:
    table = PriceTable().with_overrides(
        {"llama3.1:8b": ModelPrice(input_per_mtok=0.05, output_per_mtok=0.1)}
    )
    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION)

    quote = table.quote("llama3.1:8b", usage, base_url="http://127.0.0.1:11434/v1")

    assert (quote.priced, quote.source, quote.priced_as) == (True, "override", "llama3.1:8b")
    assert quote.cost_usd == pytest.approx(0.15)


def test_azure_is_priced_by_the_model_the_response_reports() -> None:
    table = PriceTable()
    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION)

    by_response = table.quote(
        "prod-chat-deployment", usage, provider="azure", reported_model="gpt-4o-mini-2024-07-18"
    )
    deployment_only = table.quote("prod-chat-deployment", usage, provider="azure")

    assert by_response.priced and by_response.priced_as == "gpt-4o-mini-2024-07-18"
    assert by_response.cost_usd == pytest.approx(0.15 + 0.6)
    assert (deployment_only.priced, deployment_only.cost_usd) == (False, 0.0)


def test_a_known_provider_is_recognised_by_its_base_url() -> None:
    usage = TokenUsage(input_tokens=MILLION, output_tokens=MILLION)

    quote = PriceTable().quote(
        "llama-3.1-8b-instant", usage, base_url="https://api.groq.com/openai/v1"
    )

    assert quote.priced and quote.source == "genai-prices" and quote.cost_usd > 0
