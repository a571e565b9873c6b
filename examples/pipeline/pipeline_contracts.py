"""The typed handoffs of the expense pipeline: each agent's output is the next one's input."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExpenseLines(BaseModel):
    lines: list[str] = Field(min_length=1)


class Expense(BaseModel):
    item: str = Field(min_length=1)
    amount: float = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class Expenses(BaseModel):
    expenses: list[Expense] = Field(min_length=1)


class Summary(BaseModel):
    totals: dict[str, float]  # per currency code
    count: int
    text: str
