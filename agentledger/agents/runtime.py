"""Building a Runtime (models, prices, sandbox) for a workflow."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from agentledger.agents.context import Runtime
from agentledger.agents.workflow import Workflow
from agentledger.llm.base import ChatModel, ModelSettings
from agentledger.llm.pricing import PriceTable
from agentledger.security.masking import Masker, SqliteVault
from agentledger.security.private_files import private_dir
from agentledger.settings import Settings

if TYPE_CHECKING:
    from agentledger.streams.log import EventLog

log = logging.getLogger(__name__)


def build_model(settings: ModelSettings, base_dir: Path | None) -> ChatModel:
    from agentledger.llm.factory import build_model as factory_build

    return factory_build(
        settings,
        base_dir=base_dir,
        api_key_file=Path(settings.api_key_file) if settings.api_key_file else None,
        api_version=settings.api_version,
    )


def build_runtime(
    workflow: Workflow,
    settings: Settings | None = None,
    *,
    models: ChatModel | Mapping[str, ChatModel] | None = None,
    prices: PriceTable | None = None,
    memory_log: EventLog | None = None,
) -> Runtime:
    """Models for every agent: ``models`` when given (one for all, or by agent name), else
    built from each agent's model settings (one client per distinct settings).

    When an agent declares ``memory``, long-term memory is projected from ``memory_log``
    (default: the SQLite ledger of ``settings``) into the index beside it."""
    settings = settings or Settings()
    base_dir = workflow.source.parent if workflow.source else None
    by_agent: dict[str, ChatModel] = {}
    built: dict[str, ChatModel] = {}
    for name, spec in workflow.agents.items():
        if models is not None and not isinstance(models, Mapping):
            by_agent[name] = models
            continue
        if isinstance(models, Mapping) and name in models:
            by_agent[name] = models[name]
            continue
        key = spec.model.model_dump_json()
        if key not in built:
            built[key] = build_model(spec.model, base_dir)
        by_agent[name] = built[key]
    if prices is None:
        prices = (
            PriceTable.from_file(settings.prices_file) if settings.prices_file else PriceTable()
        )
    prices = prices.with_overrides(workflow.prices)  # the workflow's declared prices win
    sandbox = private_dir(settings.sandbox_dir.resolve())
    return Runtime(
        workflow=workflow,
        models=by_agent,
        prices=prices,
        sandbox=sandbox,
        masker=Masker(SqliteVault(settings.vault_path)),
        memory=(workflow.memory.open(memory_log, settings) if workflow.uses_memory else None),
    )
