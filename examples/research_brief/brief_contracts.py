"""The typed handoffs of the research-brief workflow.

Each agent's final answer is validated against one of these models before the next agent
sees it (a failed validation is sent back to the agent to repair). They are the contract
between agents, so they check what a schema alone cannot: every cited source is listed.

    researcher --Findings--> writer --Brief--> reviewer --Review--> (task result)
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SourceName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]+\.md$"),
    Field(
        description="a corpus file name exactly as search_notes returned it, e.g. 'evaluation.md'"
    ),
]


class _Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _unlisted(cited: list[str], listed: list[str]) -> list[str]:
    known = set(listed)
    return sorted({s for s in cited if s not in known})


class KeyPoint(_Contract):
    """One finding, in a sentence or two, and the note it comes from."""

    point: str = Field(min_length=20, max_length=1200)
    source: SourceName


class Findings(_Contract):
    """What one researcher found about one aspect of the goal."""

    aspect: str = Field(min_length=3, max_length=120, description="the aspect researched")
    key_points: list[KeyPoint] = Field(min_length=1, max_length=12)
    sources: list[SourceName] = Field(min_length=1, description="every note cited above, once")

    @model_validator(mode="after")
    def _sources_listed(self) -> Self:
        missing = _unlisted([k.source for k in self.key_points], self.sources)
        if missing:
            raise ValueError(f"key points cite sources missing from 'sources': {missing}")
        return self


class Section(_Contract):
    heading: str = Field(min_length=3, max_length=120)
    body: str = Field(min_length=20, description="markdown; cite notes as [file.md]")


class Brief(_Contract):
    """The written brief, before review."""

    title: str = Field(min_length=5, max_length=200)
    summary: str = Field(min_length=20, max_length=3000)
    sections: list[Section] = Field(min_length=1, max_length=12)
    sources: list[SourceName] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_sources(self) -> Self:
        if len(set(self.sources)) != len(self.sources):
            raise ValueError("'sources' lists a note more than once")
        return self

    def to_markdown(self) -> str:
        """The brief as a markdown document (what the reviewer saves)."""
        lines = [f"# {self.title}", "", "## Summary", "", self.summary, ""]
        for section in self.sections:
            lines += [f"## {section.heading}", "", section.body.strip(), ""]
        lines += ["## Sources", ""]
        lines += [f"{i}. {source}" for i, source in enumerate(self.sources, 1)]
        return "\n".join(lines) + "\n"


class Review(_Contract):
    """The reviewer's verdict, the final markdown and where it was saved."""

    approved: bool
    score: int = Field(ge=0, le=10)
    issues: list[str] = Field(default_factory=list, description="empty only when nothing is wrong")
    brief_markdown: str = Field(min_length=1)
    saved_to: str | None = Field(default=None, description="path save_brief returned, if saved")

    @model_validator(mode="after")
    def _rejection_says_why(self) -> Self:
        if not self.approved and not self.issues:
            raise ValueError("a brief that is not approved needs at least one issue saying why")
        return self
