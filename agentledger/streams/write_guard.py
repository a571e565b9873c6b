"""The one write path: every event is masked before any backend stores or produces it.

Each ``EventLog`` backend runs its ``guard`` on every batch in ``append``, before the
first byte is written, so no writer can forget it: the runners, the approvals CLI
(``approve --note``, ``deny --reason``), the Kafka worker stamping another writer's
decision, goal intake, anything a plugin appends. Masking replaces each finding with a
placeholder (``[email:3f2a9c1e0b7d]``) and keeps the raw value in the vault, so a tool
that declares it may receive a value still gets it (``agentledger.security.masking``).

A backend built without a guard masks with a vault of its own choosing (the SQLite log:
``vault.db`` beside the ledger); the runners install their runtime's masker, so the
placeholders of one deployment agree. A workflow that asks for a raw primary log
(``security: primary_log: raw``) gets a guard with ``masked=False`` from its runner:
that is the one, explicit, way to store raw values.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.schemas import EventBase
from agentledger.security.masking import Masker, SqliteVault

__all__ = ["WriteGuard", "settings_guard"]


class WriteGuard:
    """Masks each event of a batch (the same object back when there was nothing to mask)."""

    def __init__(self, masker: Masker, *, masked: bool = True) -> None:
        self.masker = masker
        self.masked = masked

    def __call__(self, events: Sequence[EventBase]) -> list[EventBase]:
        if not self.masked:
            return list(events)
        mask = self.masker.mask_event
        return [mask(e) for e in events]


def settings_guard(masked: bool = True) -> WriteGuard:
    """A guard masking into the settings' vault (``AGENTLEDGER_VAULT``, default
    ``HOME/vault.db``), opened only when a value is first found."""
    from agentledger.settings import Settings

    return WriteGuard(Masker(lambda: SqliteVault(Settings().vault_path)), masked=masked)
