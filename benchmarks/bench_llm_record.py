"""What recording one LLM call costs on the write path: pricing it, and encoding the event.

    python benchmarks/bench_llm_record.py            # 20,000 of each
    python benchmarks/bench_llm_record.py --n 100000

Figures, in µs per call:

* ``quote (override)`` — a model priced by the prices file or the workflow's ``prices:``;
* ``quote (genai-prices)`` — a model looked up in the bundled price database (OpenAI);
* ``quote (unpriced)`` — a model behind a local server (no lookup is made);
* ``encode completed`` — ``codec.encode`` of an ``llm_call_completed`` of typical size
  (whose quiet fields are left out of the bytes), and with ``usage_source``/``unpriced``
  set;
* ``encode attempt`` — one ``llm_attempt_failed``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from agentledger.llm.pricing import ModelPrice, PriceTable
from agentledger.schemas import LlmAttemptFailed, LlmCallCompleted
from agentledger.schemas.codec import encode
from agentledger.schemas.llm import TokenUsage


def per_call_us(fn: Callable[[], object], n: int) -> float:
    fn()  # warm caches (the price database loads on first use)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    n = parser.parse_args(argv).n
    usage = TokenUsage(input_tokens=1200, output_tokens=300, cached_tokens=400)
    table = PriceTable().with_overrides(
        {"llama3.1:8b": ModelPrice(input_per_mtok=0.1, output_per_mtok=0.2)}
    )
    local = "http://127.0.0.1:11434/v1"
    completed = LlmCallCompleted(
        task_id="t",
        subtask_id="research",
        iteration=2,
        model="gpt-4o-mini",
        provider="openai",
        request_digest="0" * 32,
        content="Kafka keeps an ordered, replicated log. " * 20,
        usage=usage,
        cost_usd=0.0003,
        latency_ms=812.0,
        raw_response={"id": "chatcmpl-1", "choices": [{"message": {"content": "x" * 800}}]},
    )
    flagged = completed.model_copy(update={"usage_source": "estimated", "unpriced": True})
    attempt = LlmAttemptFailed(
        task_id="t",
        subtask_id="research",
        iteration=2,
        model="gpt-4o-mini",
        provider="openai",
        attempt=1,
        error_kind="rate_limited",
        status_code=429,
        retry_after_s=2.0,
        delay_s=2.05,
        message="rate limited (HTTP 429): Rate limit reached",
    )
    rows = [
        ("quote (override)", lambda: table.quote("llama3.1:8b", usage, base_url=local)),
        ("quote (genai-prices)", lambda: table.quote("gpt-4o-mini", usage)),
        ("quote (unpriced)", lambda: table.quote("gpt-4o-mini", usage, base_url=local)),
        ("encode completed", lambda: encode(completed)),
        ("encode completed, flagged", lambda: encode(flagged)),
        ("encode attempt", lambda: encode(attempt)),
    ]
    print(f"{'what':28} µs per call   ({n:,} calls each)")
    for name, fn in rows:
        print(f"{name:28} {per_call_us(fn, n):8.1f}")


if __name__ == "__main__":
    main()
