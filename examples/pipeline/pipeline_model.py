"""The offline stand-in for an LLM in the pipeline example: a few deterministic rules.

* extractor - the note after the goal's first colon, split on ';' into lines.
* normaliser - each line "<item words> <amount> <currency>" as a typed Expense.
* summariser - totals per currency and one sentence.

It reads only the <data> block the runtime sends (goal, subtask, inputs), so what each
agent sees is exactly what the pipeline handed it. Anything else raises a ModelError,
recorded as a failed LLM call, instead of inventing an answer.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pipeline_contracts import Expense, ExpenseLines, Expenses, Summary

from agentledger.errors import ModelError
from agentledger.llm import ModelRequest, ModelResponse, reply_json

_LINE = re.compile(r"^(?P<item>.+?)\s+(?P<amount>\d+(?:[.,]\d+)?)\s*(?P<currency>[A-Za-z]{3})$")


def _data(request: ModelRequest) -> dict[str, Any]:
    text = (request.messages[1].content or "").strip()
    data = orjson.loads(text.removeprefix("<data>").removesuffix("</data>"))
    if not isinstance(data, dict):
        raise ModelError("the <data> block is not an object", kind="unexpected_request")
    return data


def extract(goal: str) -> ExpenseLines:
    note = goal.partition(":")[2] or goal
    return ExpenseLines(lines=[part.strip() for part in note.split(";") if part.strip()])


def normalise(lines: ExpenseLines) -> Expenses:
    expenses = []
    for line in lines.lines:
        m = _LINE.match(line.rstrip("."))
        if m is None:
            raise ModelError(f"cannot read the expense {line!r}", kind="unexpected_request")
        expenses.append(
            Expense(
                item=m["item"].lower(),
                amount=float(m["amount"].replace(",", ".")),
                currency=m["currency"].upper(),
            )
        )
    return Expenses(expenses=expenses)


def summarise(expenses: Expenses) -> Summary:
    totals: dict[str, float] = {}
    for e in expenses.expenses:
        totals[e.currency] = round(totals.get(e.currency, 0.0) + e.amount, 2)
    parts = ", ".join(f"{amount:.2f} {code}" for code, amount in sorted(totals.items()))
    n = len(expenses.expenses)
    return Summary(totals=totals, count=n, text=f"{n} expenses: {parts}.")


def respond(request: ModelRequest) -> ModelResponse:
    data = _data(request)
    inputs = data.get("inputs") or {}
    if request.agent == "extractor":
        out: Any = extract(str(data["goal"]))
    elif request.agent == "normaliser":
        out = normalise(ExpenseLines.model_validate(inputs["extract"]))
    elif request.agent == "summariser":
        out = summarise(Expenses.model_validate(inputs["normalise"]))
    else:
        raise ModelError(f"no rule for agent {request.agent!r}", kind="unexpected_request")
    return reply_json(out.model_dump(mode="json"))
