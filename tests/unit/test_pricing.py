"""PriceTable: default prices, TOML overrides, cached-token pricing, unknown models."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agentledger.llm.pricing import DEFAULT_PRICES, ModelPrice, PriceTable
from agentledger.schemas.llm import TokenUsage

MILLION = 1_000_000


def test_defaults_price_known_models() -> None:
    table = PriceTable()

    assert all(table.known(name) for name in DEFAULT_PRICES)
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
    assert not table.known("gpt-4o")


def test_a_bad_price_entry_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("[models.broken]\ninput_per_mtok = 1.0\n")

    with pytest.raises(ValueError, match="output_per_mtok"):
        PriceTable.from_file(path)


def test_unknown_model_costs_zero_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agentledger.llm.pricing")
    table = PriceTable()
    usage = TokenUsage(input_tokens=100, output_tokens=100)

    costs = [table.cost("mystery-model", usage) for _ in range(3)]
    table.cost("another-mystery", usage)

    assert costs == [0.0, 0.0, 0.0]
    messages = [r.getMessage() for r in caplog.records if r.name == "agentledger.llm.pricing"]
    assert len(messages) == 2
    assert "mystery-model" in messages[0]
    assert "another-mystery" in messages[1]
