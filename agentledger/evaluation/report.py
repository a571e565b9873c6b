"""``eval report``: baseline against candidate, case by case and in aggregate.

Built from an eval run's events alone (``eval_case_completed``, ``eval_score_recorded``),
so a report can be made again at any time, from the ledger or from the audit table's
payloads. A run of a case passes when every scorer passed it.

Deltas are candidate minus baseline. Score and pass-rate deltas are paired by case (each
case's mean over its repetitions), with a 95% confidence interval from Student's t over
the per-case differences; cost and latency deltas are relative to the baseline's mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentledger.schemas import (
    EvalCaseCompleted,
    EvalRunStarted,
    EvalScoreRecorded,
    Event,
)

# two-sided 95% Student t critical values by degrees of freedom (1..30); normal beyond
_T95 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]  # fmt: skip


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def confidence_interval(diffs: Sequence[float]) -> tuple[float, float]:
    """95% interval of the mean of paired differences (a point when n < 2)."""
    n = len(diffs)
    m = mean(diffs)
    if n < 2:
        return m, m
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    half = t * sd / math.sqrt(n)
    return m - half, m + half


@dataclass(frozen=True)
class Delta:
    baseline: float
    candidate: float
    low: float | None = None  # confidence interval of the delta (paired measures)
    high: float | None = None

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline

    @property
    def relative(self) -> float | None:
        return self.delta / self.baseline if self.baseline else None


@dataclass(frozen=True)
class CaseRow:
    case_id: str
    pass_rate: Delta
    score: Delta  # mean over scorers and repetitions
    failing_scorers: list[str]  # scorers the candidate failed at least once


@dataclass(frozen=True)
class EvalReport:
    run_id: str
    suite: str
    mode: str
    cases: list[CaseRow]
    pass_rate: Delta
    scorers: dict[str, Delta]
    cost_usd: Delta
    latency_ms: Delta
    runs: dict[str, int]
    thresholds: dict[str, float]
    breaches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaches

    def as_json(self) -> dict[str, Any]:
        def d(x: Delta) -> dict[str, Any]:
            return {
                "baseline": x.baseline,
                "candidate": x.candidate,
                "delta": x.delta,
                "ci95": [x.low, x.high] if x.low is not None else None,
                "relative": x.relative,
            }

        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "mode": self.mode,
            "runs": self.runs,
            "pass_rate": d(self.pass_rate),
            "scorers": {k: d(v) for k, v in self.scorers.items()},
            "cost_usd": d(self.cost_usd),
            "latency_ms": d(self.latency_ms),
            "cases": [
                {
                    "case_id": c.case_id,
                    "pass_rate": d(c.pass_rate),
                    "score": d(c.score),
                    "failing_scorers": c.failing_scorers,
                }
                for c in self.cases
            ],
            "thresholds": self.thresholds,
            "breaches": self.breaches,
            "ok": self.ok,
        }

    def render(self) -> str:
        lines = [
            f"eval run {self.run_id} — suite {self.suite} ({self.mode}); runs: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.runs.items())),
            "",
            f"{'case':<36}{'pass B':>8}{'pass C':>8}{'score B':>9}{'score C':>9}{'Δ':>8}",
        ]
        for c in self.cases:
            flag = f"  ✗ {', '.join(c.failing_scorers)}" if c.failing_scorers else ""
            lines.append(
                f"{c.case_id[:35]:<36}{c.pass_rate.baseline:>8.0%}{c.pass_rate.candidate:>8.0%}"
                f"{c.score.baseline:>9.3f}{c.score.candidate:>9.3f}{c.score.delta:>+8.3f}{flag}"
            )
        lines += ["", "aggregate (candidate - baseline, 95% CI paired by case):"]
        lines.append(_line("pass rate", self.pass_rate, pct=True))
        for name, delta in self.scorers.items():
            lines.append(_line(f"score {name}", delta))
        lines.append(_line("cost / run (USD)", self.cost_usd, rel=True))
        lines.append(_line("latency / run (ms)", self.latency_ms, rel=True))
        lines.append("")
        if self.breaches:
            lines += [f"FAILED: {b}" for b in self.breaches]
        else:
            shown = ", ".join(f"{k}={v:g}" for k, v in self.thresholds.items()) or "none set"
            lines.append(f"ok: no threshold crossed ({shown})")
        return "\n".join(lines)


def _line(title: str, x: Delta, *, pct: bool = False, rel: bool = False) -> str:
    def fmt(v: float) -> str:
        return f"{v:.1%}" if pct else f"{v:.6g}"

    def fmt_delta(v: float) -> str:
        return f"{v * 100:+.1f} pts" if pct else f"{v:+.4g}"

    text = f"  {title:<22}{fmt(x.baseline):>12} → {fmt(x.candidate):<12} Δ {fmt_delta(x.delta)}"
    if x.low is not None and x.high is not None:
        text += f"  [{fmt_delta(x.low)}, {fmt_delta(x.high)}]"
    if rel and x.relative is not None:
        text += f"  ({x.relative:+.1%})"
    return text


def pass_rates(events: Sequence[Event]) -> dict[str, float]:
    """Share of runs that passed every scorer, per variant."""
    passed = _run_passes(events)
    out: dict[str, float] = {}
    for variant in ("baseline", "candidate"):
        runs = [ok for (v, _, _), ok in passed.items() if v == variant]
        if runs:
            out[variant] = mean([float(ok) for ok in runs])
    return out


def _run_passes(events: Sequence[Event]) -> dict[tuple[str, str, int], bool]:
    passed: dict[tuple[str, str, int], bool] = {}
    for e in events:
        if isinstance(e, EvalCaseCompleted):
            passed.setdefault((e.variant, e.case_id, e.repetition), True)
        if isinstance(e, EvalScoreRecorded):
            key = (e.variant, e.case_id, e.repetition)
            passed[key] = passed.get(key, True) and e.passed
    return passed


def build_report(
    events: Sequence[Event], thresholds: Mapping[str, float] | None = None
) -> EvalReport:
    started = next((e for e in events if isinstance(e, EvalRunStarted)), None)
    if started is None:
        raise ValueError("not an eval run: it has no eval_run_started event")
    limits = {**started.thresholds, **(thresholds or {})}
    passes = _run_passes(events)
    case_ids = sorted({c for (_, c, _) in passes})
    scores: dict[tuple[str, str, str], list[float]] = defaultdict(list)  # variant, case, scorer
    failing: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if isinstance(e, EvalScoreRecorded):
            scores[(e.variant, e.case_id, e.scorer)].append(e.score)
            if e.variant == "candidate" and not e.passed:
                failing[e.case_id].add(e.scorer)
    runs = [e for e in events if isinstance(e, EvalCaseCompleted)]

    def case_pass(variant: str, case: str) -> float | None:
        values = [float(ok) for (v, c, _), ok in passes.items() if v == variant and c == case]
        return mean(values) if values else None

    def case_score(variant: str, case: str, scorer: str | None = None) -> float | None:
        values = [
            x
            for (v, c, s), xs in scores.items()
            if v == variant and c == case and (scorer is None or s == scorer)
            for x in xs
        ]
        return mean(values) if values else None

    def paired(get: Any) -> Delta:
        base, cand = [], []
        for case in case_ids:
            b, c = get("baseline", case), get("candidate", case)
            if b is not None and c is not None:
                base.append(b)
                cand.append(c)
        low, high = confidence_interval([c - b for b, c in zip(base, cand, strict=True)])
        return Delta(mean(base), mean(cand), low, high)

    def per_run(attr: str) -> Delta:
        return Delta(
            mean([getattr(r, attr) for r in runs if r.variant == "baseline"]),
            mean([getattr(r, attr) for r in runs if r.variant == "candidate"]),
        )

    rows = []
    for case in case_ids:
        rows.append(
            CaseRow(
                case,
                Delta(case_pass("baseline", case) or 0.0, case_pass("candidate", case) or 0.0),
                Delta(case_score("baseline", case) or 0.0, case_score("candidate", case) or 0.0),
                sorted(failing.get(case, ())),
            )
        )
    scorer_names = list(started.scorers)
    report = EvalReport(
        run_id=started.task_id,
        suite=started.suite,
        mode=started.mode,
        cases=rows,
        pass_rate=paired(case_pass),
        scorers={
            name: paired(lambda v, c, name=name: case_score(v, c, name)) for name in scorer_names
        },
        cost_usd=per_run("cost_usd"),
        latency_ms=per_run("latency_ms"),
        runs={v: sum(1 for r in runs if r.variant == v) for v in ("baseline", "candidate")},
        thresholds=limits,
    )
    return _judge_thresholds(report)


def _judge_thresholds(report: EvalReport) -> EvalReport:
    t = report.thresholds
    breaches: list[str] = []
    drop = -report.pass_rate.delta
    if "max_pass_rate_drop" in t and drop > t["max_pass_rate_drop"] + 1e-12:
        breaches.append(
            f"pass rate dropped {drop:.1%} (from {report.pass_rate.baseline:.1%} to "
            f"{report.pass_rate.candidate:.1%}); the limit is {t['max_pass_rate_drop']:.1%}"
        )
    if "max_score_drop" in t:
        for name, delta in report.scorers.items():
            if -delta.delta > t["max_score_drop"] + 1e-12:
                breaches.append(
                    f"score {name} dropped {-delta.delta:.3f} (from {delta.baseline:.3f} to "
                    f"{delta.candidate:.3f}); the limit is {t['max_score_drop']:g}"
                )
    for key, title, delta in (
        ("max_cost_increase", "cost per run", report.cost_usd),
        ("max_latency_increase", "latency per run", report.latency_ms),
    ):
        rel = delta.relative
        if key in t and rel is not None and rel > t[key] + 1e-12:
            breaches.append(f"{title} rose {rel:.1%}; the limit is {t[key]:.1%}")
    return EvalReport(**{**report.__dict__, "breaches": breaches})
