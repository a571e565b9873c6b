"""The garbage collector in a long-running runner: what startup built stays out of it.

Importing the runtime (pydantic's schemas, the detectors, the model clients) leaves about
160,000 objects the collector tracks and will never free. Each older-generation
collection walks them all again, and a worker's steady allocation (events, states,
tasks) triggers those collections often: a quarter of ``WorkerCore``'s CPU per event
went there. ``settle`` moves everything tracked so far into the permanent generation
(``gc.freeze``), so later collections look only at what the run allocates. It does not
collect first: a collection at that point would run finalizers of whatever the caller
left behind, and startup's own garbage is small.
The Kafka worker calls it once, when it starts serving (its topics checked, its runtime
built), not before: a worker refused earlier, e.g. called in-process by a test, must not
freeze its caller's heap. Tests and library callers do not call it.
The embedded ``agentledger run`` does not: it ends with its task, and objects frozen
there are never collected, so a runtime dropped in a reference cycle would keep its
vault's SQLite connection open (unflushed WAL) for as long as the process lives.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Keep every object tracked so far out of later collections."""
    gc.freeze()
