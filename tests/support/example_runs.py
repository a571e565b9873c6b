"""Goals for the shipped examples, and a helper to record a run of one through the CLI."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXAMPLE_GOALS: dict[str, str] = {
    "pipeline": "Summarise these expenses: taxi 23.50 eur; Hotel 180 EUR; lunch 14,20 eur; "
    "train 62 usd",
    "research_brief": "Write a research brief on running LLM agents reliably in production: "
    "idempotency, retries, cost control and auditability.",
    "swarm": "Pick the best name for a billing service",
    "peer_to_peer": "My invoice for March is wrong, I was charged twice",
    "hierarchical": "Plan the launch of the new billing service",
}


def record_example(name: str, workflow: Path | None = None) -> str:
    """Run an example's goal through ``agentledger run``; return the task id."""
    path = workflow or EXAMPLES / name / "workflow.yaml"
    code, out, err = cli("run", str(path), "--goal", EXAMPLE_GOALS[name], "--quiet")
    assert code == 0, err
    return out.strip().splitlines()[-1].split()[1]
