"""Values leaked per category and sink, and what masking costs per event.

Leaks: the sensitive corpus (tests/fixtures/sensitive/corpus.json) is spread through a
real embedded run of tests/fixtures/sensitive/workflow.yaml (goal, input, document, tool
arguments a tool logs, an approval's note and a denial's reason, a JSON answer with values
right after JSON escapes); then every sink is read: ledger bytes, `events --json`,
`replay --json`, `status --json`, all other CLI output, Python logs and the audit table
(chdb). The Kafka topics are covered by tests/integration/test_masking_kafka.py.

Cost: ``Masker.mask_event`` on the events of an ordinary run (prose, ids, numbers; nothing
to mask) and on the raw events of the sensitive run (everything to mask), in µs per event.

    python benchmarks/bench_leaks.py              # both
    python benchmarks/bench_leaks.py --cost-only  # also runs against older code (PYTHONPATH)
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sensitive"
WORKFLOW = FIXTURE / "workflow.yaml"


def load_corpus() -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = json.loads((FIXTURE / "corpus.json").read_text("utf-8"))[
        "values"
    ]
    return values


def _forms(value: str) -> set[str]:
    import unicodedata

    forms = {value, unicodedata.normalize("NFKC", value)}
    return forms | {json.dumps(f)[1:-1] for f in forms}


# -- leaks ----------------------------------------------------------------------------------


def measure_leaks() -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """``{sink: {category: values leaked}}`` and the number of values per category."""
    from agentledger.cli import main

    corpus = load_corpus()
    all_text = "\n".join(item["text"] for item in corpus)
    sinks: dict[str, list[str]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        (home / "sandbox").mkdir(parents=True)
        (home / "sandbox" / "customer.txt").write_text(all_text, encoding="utf-8")
        os.environ["AGENTLEDGER_HOME"] = str(home)
        records = io.StringIO()
        handler = logging.StreamHandler(records)
        logging.getLogger().addHandler(handler)

        def cli(sink: str, *argv: str) -> str:
            out, err = io.StringIO(), io.StringIO()
            main(list(argv), out=out, err=err)
            sinks[sink].append(out.getvalue())
            sinks["CLI output"].append(err.getvalue())
            return out.getvalue()

        tasks = []
        for decide in ("approve", "deny"):
            out = cli("CLI output", "run", str(WORKFLOW), "--goal", all_text, "--input",
                      "customer=" + all_text.replace("\n", " | "))  # fmt: skip
            task_id = out.splitlines()[0].split()[1]
            approval = next(w for w in out.split() if w.startswith("ap-"))
            cli("CLI output", "approvals", "--json")
            flag = "--note" if decide == "approve" else "--reason"
            cli("CLI output", decide, approval, "--by", "ann", flag, all_text)
            tasks.append(task_id)
        for task_id in tasks:
            cli("events --json", "events", task_id, "--json")
            cli("replay --json", "replay", task_id, "--json")
            cli("status --json", "status", task_id, "--json")
            cli("CLI output", "events", task_id)
            cli("CLI output", "status", task_id)
        logging.getLogger().removeHandler(handler)
        sinks["logs"].append(records.getvalue())
        ledger = b"".join(p.read_bytes() for p in home.glob("ledger.db*"))
        sinks["ledger bytes"].append(ledger.decode("utf-8", errors="replace"))
        chdb = f"chdb://{Path(tmp) / 'audit.chdb'}?database=leaks"
        main(["--db", str(home / "ledger.db"), "audit", "sync", "--clickhouse", chdb],
             out=io.StringIO(), err=io.StringIO())  # fmt: skip
        from agentledger.audit.store import AuditStore

        store = AuditStore.connect(chdb)
        rows = store.query("SELECT * FROM leaks.audit_events").rows
        sinks["audit table"].append("\n".join(str(r) for r in rows))
        store.close()

    per_category: dict[str, int] = defaultdict(int)
    for item in corpus:
        per_category[item["category"]] += 1
    leaks: dict[str, dict[str, int]] = {}
    for sink, texts in sinks.items():
        joined = "\n".join(texts)
        leaks[sink] = {cat: 0 for cat in per_category}
        for item in corpus:
            if any(form in joined for form in _forms(item["value"])):
                leaks[sink][item["category"]] += 1
    return leaks, dict(per_category)


# -- cost -----------------------------------------------------------------------------------


async def _ordinary_events() -> list[Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_embedded import build

    from agentledger.streams.embedded import EmbeddedRunner
    from agentledger.streams.memory import MemoryEventLog
    from agentledger.testing import make_runtime, task_events

    wf, model = build(4, 10)
    log = MemoryEventLog()
    with tempfile.TemporaryDirectory() as tmp:
        runner = EmbeddedRunner(log, make_runtime(wf, model, sandbox=Path(tmp)))
        task_id = await runner.submit("Write a short brief on partition ordering in Kafka")
        await runner.run(task_id)
    return await task_events(log, task_id)


async def _sensitive_events() -> list[Any]:
    from agentledger.agents.runtime import build_runtime
    from agentledger.agents.workflow import load_workflow
    from agentledger.settings import Settings
    from agentledger.streams.embedded import EmbeddedRunner
    from agentledger.streams.memory import MemoryEventLog
    from agentledger.testing import task_events

    all_text = "\n".join(item["text"] for item in load_corpus())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp), primary_log="raw")  # keep the events raw
        (Path(tmp) / "sandbox").mkdir()
        (Path(tmp) / "sandbox" / "customer.txt").write_text(all_text, encoding="utf-8")
        runtime = build_runtime(load_workflow(WORKFLOW, settings=settings), settings)
        log = MemoryEventLog()
        runner = EmbeddedRunner(log, runtime)
        task_id = await runner.submit(all_text, inputs={"customer": all_text})
        await runner.run(task_id)
        return await task_events(log, task_id)


def _clear_caches() -> None:
    try:
        from agentledger.security import detectors
    except ImportError:  # older code without the detectors module
        return
    for name in ("_find_default", "_phone"):
        cached = getattr(detectors, name, None)
        if cached is not None:
            cached.cache_clear()


def measure_cost(rounds: int) -> dict[str, float]:
    from agentledger.security.masking import Masker

    ordinary = asyncio.run(_ordinary_events())
    sensitive = asyncio.run(_sensitive_events())
    masker = Masker()
    figures: dict[str, float] = {}
    for name, events in (("ordinary", ordinary), ("sensitive", sensitive)):
        for e in events:  # warm caches
            masker.mask_event(e)
        elapsed = 0.0
        for _ in range(rounds):
            _clear_caches()  # every round sees each text for the first time (a worst case)
            started = time.perf_counter()
            for e in events:
                masker.mask_event(e)
            elapsed += time.perf_counter() - started
        figures[name] = elapsed / (rounds * len(events)) * 1e6
        figures[f"{name}_events"] = len(events)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(FIXTURE))  # the fixture's scripted model and tools
    cost = measure_cost(args.rounds)
    print("masking cost per event (Masker.mask_event)")
    print(
        f"  ordinary run, nothing to mask: {cost['ordinary']:8.1f} µs "
        f"({cost['ordinary_events']:.0f} events)"
    )
    print(
        f"  sensitive run, corpus in every event: {cost['sensitive']:8.1f} µs "
        f"({cost['sensitive_events']:.0f} events)"
    )
    if args.cost_only:
        return
    leaks, per_category = measure_leaks()
    categories = sorted(per_category)
    print("\nvalues leaked per sink and category (of the corpus values in each category)")
    print(f"{'sink':16}" + "".join(f"{c[:8]:>9}" for c in categories) + f"{'total':>8}")
    print(f"{'(values)':16}" + "".join(f"{per_category[c]:>9}" for c in categories))
    for sink, counts in sorted(leaks.items()):
        row = "".join(f"{counts[c]:>9}" for c in categories)
        print(f"{sink:16}{row}{sum(counts.values()):>8}")


if __name__ == "__main__":
    main()
