"""Where the console reads from: the embedded SQLite ledger, or Kafka plus a ClickHouse server."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from agentledger.settings import Settings
from agentledger.streams.log import EventLog


@dataclass
class ConsoleSource:
    """The log the console shows, and what it needs to decide approvals and chart the audit.

    ``ledger`` is the SQLite file (embedded shape); ``brokers``/``prefix`` name the Kafka log
    (distributed shape). ``clickhouse`` is the audit store URL; embedded, the default is the
    in-process engine beside the ledger.
    """

    log: EventLog
    settings: Settings
    ledger: Path | None = None
    brokers: str | None = None
    prefix: str | None = None
    clickhouse: str | None = None

    @property
    def shape(self) -> str:
        return "kafka" if self.brokers else "embedded"

    def audit_url(self) -> str:
        from agentledger.audit.cli import default_url

        url = self.clickhouse or os.environ.get("AGENTLEDGER_CLICKHOUSE_URL")
        if url:
            return url
        if self.ledger is None:
            raise ValueError("a Kafka console needs --clickhouse for analytics")
        return default_url(self.ledger)

    def cli_args(self, **extra: object) -> argparse.Namespace:
        """The arguments the CLI's approval commands take, naming this source."""
        return argparse.Namespace(
            db=str(self.ledger) if self.ledger else None,
            brokers=self.brokers,
            prefix=self.prefix,
            **extra,
        )

    async def close(self) -> None:
        await self.log.close()
