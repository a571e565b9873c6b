"""A worker's watch on its broker: probe it, say when it is lost, exit when it stays lost.

``BrokerWatch.probe`` asks the broker for its topics. The broker is *lost* when it does not
answer within the probe interval (at least 1 s), or answers without the layout's topics
(an empty broker came back). The first probe that finds it lost prints a ``degraded``
health line and notes since when; the first that finds it back prints ``recovered``.
``probe_or_exit`` ends the process with ``EXIT_BROKER_LOST`` once the broker has been lost
for ``lost_exit_s``, so a supervisor restarts the worker.

Example::

    watch = BrokerWatch(bootstrap, layout.names(), list_topics=list_topics,
                        start=core.start, started=lambda: core.started,
                        report=core.print_health, lost_exit_s=60)
    await watch.probe_or_exit()      # on a timer
    watch.status()                   # 'status=ok', or 'status=degraded since=... reason="..."'
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from aiokafka.errors import KafkaError

from agentledger.errors import EventLogError

# The worker's one logger (log configs refer to it): broker lines are worker lines.
log = logging.getLogger("agentledger.streams.kafka_runner")

EXIT_BROKER_LOST = 4
"""The worker's exit code after ``broker_lost_exit_s`` without its broker (the CLI's
EXIT_LOG: the event log is unreachable)."""


class HealthReport(Protocol):
    """Prints a health line: ``worker <what>: <health> <extra>`` (``WorkerCore.print_health``)."""

    def __call__(self, what: str = "health", *, extra: str = "") -> None: ...


class BrokerWatch:
    """Whether the broker at ``bootstrap`` is there, with the layout's ``topics``."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        list_topics: Callable[[], Awaitable[set[str]]],
        start: Callable[[], Awaitable[None]],
        started: Callable[[], bool],
        report: HealthReport,
        probe_interval_s: float = 1.0,
        lost_exit_s: float = 60.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self._list_topics = list_topics
        self._start = start
        self._started = started
        self._report = report
        self.probe_interval_s = probe_interval_s
        self.lost_exit_s = lost_exit_s
        self.degraded_since: datetime | None = None  # when the broker was last seen lost
        self.degraded_reason = ""

    async def probe(self, now: datetime | None = None) -> bool:
        """Ask the broker for metadata; note (and print) a loss or a recovery. Returns
        whether the broker is healthy."""
        timeout = max(1.0, self.probe_interval_s * 2)
        problem = ""
        try:
            if not self._started():
                await asyncio.wait_for(self._start(), timeout)
            topics = await asyncio.wait_for(self._list_topics(), timeout)
            missing = [t for t in self.topics if t not in topics]
            if missing:
                problem = f"topics missing on {self.bootstrap}: {', '.join(missing)}"
        except (KafkaError, EventLogError, OSError, TimeoutError) as exc:
            problem = f"broker {self.bootstrap} unreachable: {exc or type(exc).__name__}"
        at = now or datetime.now(UTC)
        if not problem:
            if self.degraded_since is not None:
                lost = (at - self.degraded_since).total_seconds()
                self.degraded_since, self.degraded_reason = None, ""
                quiet_clients(False)
                log.warning("broker back after %.1f s", lost)
                self._report("recovered")
            return True
        self.degraded_reason = problem
        if self.degraded_since is None:
            self.degraded_since = at
            log.error("broker lost: %s", problem)
            # aiokafka logs every failed connection, several times a second per client;
            # the health line says it once. Muted until the broker is back.
            quiet_clients(True)
            self._report("degraded")
        return False

    def lost_for(self, now: datetime | None = None) -> float:
        """Seconds since the broker was found lost (0 while it is healthy)."""
        if self.degraded_since is None:
            return 0.0
        return ((now or datetime.now(UTC)) - self.degraded_since).total_seconds()

    async def probe_or_exit(self) -> None:
        """Probe the broker; once it has been gone for ``lost_exit_s``, end the process
        with EXIT_BROKER_LOST so a supervisor restarts it. Like a crash, on purpose: a
        clean shutdown would wait on the lost broker (commits, flushes), and nothing here
        needs it: unfinished work is redone from the log."""
        await self.probe()
        lost = self.lost_for()
        limit = self.lost_exit_s
        if limit and lost >= limit:
            self._report("exiting", extra=f"broker_lost_s={lost:.1f}")
            log.error(
                "no broker for %.1f s (--broker-lost-exit %g); exiting with code %d so a "
                "supervisor restarts the worker; unfinished work is redone from the log",
                lost,
                limit,
                EXIT_BROKER_LOST,
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_BROKER_LOST)

    def status(self) -> str:
        """The health line's last field: ``status=ok`` or ``status=degraded ...``."""
        if self.degraded_since is None:
            return "status=ok"
        since = self.degraded_since.isoformat(timespec="seconds").replace("+00:00", "Z")
        reason = " ".join(self.degraded_reason.split()).replace('"', "'")
        return f'status=degraded since={since} reason="{reason}"'


def quiet_clients(quiet: bool) -> None:
    """Mute (or restore) the Kafka client library's own connection-error logging."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if quiet else logging.NOTSET)
