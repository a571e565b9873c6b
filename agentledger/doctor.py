"""``agentledger doctor``: check the ledger and print a report. Exit 0 healthy, 4 not.

agentledger doctor                # the default ledger
agentledger --db copy.db doctor   # or: agentledger doctor --db copy.db
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from agentledger.settings import Settings
from agentledger.streams.ledger_check import check_ledger

EXIT_OK, EXIT_LOG = 0, 4


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check the ledger: integrity, every record, seq, leases")
    p.add_argument("--db", dest="doctor_db", help="the ledger to check (default: --db / HOME)")
    p.set_defaults(func=cmd_doctor)


async def cmd_doctor(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    path = Path(args.doctor_db or args.db or settings.ledger_path)
    report = check_ledger(path, stale_after_s=settings.lease_stale_after_s)
    print(f"ledger {path}: {report.events} records, {report.tasks} tasks", file=out)
    for check in report.checks:
        print(f"  ok  {check}", file=out)
    for note in report.notes:
        print(f"  --  {note}", file=out)
    for problem in report.problems:
        print(f"  !!  {problem}", file=out)
    for task, where in report.quarantined.items():
        print(f"  quarantined: task {task} ({where}); `resume` refuses it", file=out)
    if report.healthy:
        print("healthy", file=out)
        return EXIT_OK
    print(f"{len(report.problems)} problem(s) found", file=out)
    return EXIT_LOG
