"""A candidate model for the expense pipeline, for the eval example (examples/eval/).

It answers like pipeline_model, except that its summariser rounds every total to whole
units and writes a terser sentence: a plausible "cheaper prompt" regression that an eval
suite should catch on the notes with cents, and pass on the others.
"""

from __future__ import annotations

from pipeline_contracts import Summary
from pipeline_model import respond as respond_exactly

from agentledger.llm import ModelRequest, ModelResponse, reply_json


def respond(request: ModelRequest) -> ModelResponse:
    response = respond_exactly(request)
    if request.agent != "summariser":
        return response
    summary = Summary.model_validate_json(response.content or "{}")
    totals = {code: float(round(amount)) for code, amount in summary.totals.items()}
    parts = ", ".join(f"{amount:.0f} {code}" for code, amount in sorted(totals.items()))
    return reply_json(
        Summary(totals=totals, count=summary.count, text=f"Total {parts}.").model_dump()
    )
