"""``agentledger memory``: search, list, forget, rebuild and episodes, over the ledger.

    agentledger memory search kb/support "refund window" --top-k 3
    agentledger memory list kb/support
    agentledger memory forget user/alice --reason "erasure request"   # a whole namespace
    agentledger memory forget kb/support refund-window                # one key
    agentledger memory rebuild
    agentledger memory episodes --user alice
    agentledger memory project --kafka 127.0.0.1:9092 --until-caught-up    # distributed

The embedder comes from ``--workflow FILE`` (its ``memory.embedder``), else the offline
default; the index is ``--index`` or the workflow's, else beside the ledger (HOME/memory.db).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, TextIO

import orjson

from agentledger.memory.config import MemoryConfig
from agentledger.memory.service import MemoryService
from agentledger.memory.store import MemoryStore
from agentledger.schemas.memory import NAMESPACE_PATTERN
from agentledger.settings import Settings
from agentledger.streams.sqlite import SqliteEventLog


def _open(
    args: argparse.Namespace, settings: Settings, *, fresh: bool = False
) -> tuple[SqliteEventLog, MemoryService]:
    config = MemoryConfig()
    if args.workflow:
        from agentledger.agents.workflow import load_workflow

        config = load_workflow(args.workflow, settings=settings).memory
    if args.index:
        config = config.model_copy(update={"index": Path(args.index)})
    log = SqliteEventLog(Path(args.db) if args.db else settings.ledger_path)
    return log, config.open(log, settings, fresh=fresh)


def _print(rows: list[dict[str, Any]], as_json: bool, out: TextIO, empty: str) -> None:
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode(), file=out)
        return
    if not rows:
        print(empty, file=out)
    for row in rows:
        head = "  ".join(f"{k}={row[k]}" for k in row if k not in ("text", "goal", "metadata"))
        body = row.get("text") or row.get("goal") or ""
        print(f"{head}\n    {body}", file=out)


async def _search(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log, memory = _open(args, settings)
    try:
        hits = await memory.search(args.namespace, args.query, args.top_k)
    finally:
        memory.close()
        await log.close()
    _print(hits, args.json, out, f"nothing in {args.namespace!r} matches")
    return 0


async def _list(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log, memory = _open(args, settings)
    try:
        items = await memory.items(args.namespace, limit=args.limit)
        counts = memory.store.namespaces()
    finally:
        memory.close()
        await log.close()
    if args.namespace is None and not args.json:
        for ns, n in counts.items():
            print(f"{ns}: {n} memories", file=out)
        return 0
    _print([i.as_json() for i in items], args.json, out, "no memories")
    return 0


async def _forget(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log, memory = _open(args, settings)
    try:
        erased = await memory.forget(
            args.namespace, args.key, reason=args.reason, requested_by=args.by
        )
    finally:
        memory.close()
        await log.close()
    what = (
        f"key {args.key!r} of {args.namespace!r}" if args.key else f"namespace {args.namespace!r}"
    )
    print(
        f"forgot {what} (event {erased.event_id}); the audit copy is masked when "
        "`agentledger audit sync` (or the Kafka projector) reaches it",
        file=out,
    )
    return 0


async def _rebuild(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log, memory = _open(args, settings, fresh=True)
    try:
        position = await memory.projection.catch_up()
        counts = memory.store.namespaces()
    finally:
        memory.close()
        await log.close()
    print(
        f"rebuilt {memory.store.path} from the ledger up to offset {position}: "
        f"{sum(counts.values())} memories in {len(counts)} namespaces",
        file=out,
    )
    return 0


async def _episodes(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    log, memory = _open(args, settings)
    try:
        await memory.projection.catch_up()
        rows = memory.store.episodes(
            workflow=args.workflow_name, user=args.user, session=args.session, limit=args.limit
        )
    finally:
        memory.close()
        await log.close()
    _print([dict(r) for r in rows], args.json, out, "no episodes")
    return 0


async def _project(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from agentledger.memory.kafka_projection import MemoryKafkaProjector

    config = MemoryConfig()
    if args.workflow:
        from agentledger.agents.workflow import load_workflow

        config = load_workflow(args.workflow, settings=settings).memory
    if args.index:
        config = config.model_copy(update={"index": Path(args.index)})
    embedder = config.embedder.build()
    store = MemoryStore(
        config.index_path(settings), identity=embedder.identity, dimensions=embedder.dimensions
    )
    try:
        projector = MemoryKafkaProjector(store, embedder, args.kafka, prefix=args.prefix)
        applied = await projector.run(until_caught_up=args.until_caught_up)
    finally:
        store.close()
    print(f"applied {applied} events to {store.path}", file=out)
    return 0


def _namespace(text: str) -> str:
    """A namespace as memory events allow it, or a usage error saying so (exit 2)."""
    if re.fullmatch(NAMESPACE_PATTERN, text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace: 1-200 characters of letters, digits and _.:@/-"
        )
    return text


def _query(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the query is empty")
    return text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workflow", help="take the embedder and index from this workflow")
    common.add_argument("--index", help="the memory index file (default: beside the ledger)")
    common.add_argument("--json", action="store_true")

    memory = subparsers.add_parser("memory", help="long-term and episodic memory")
    cmds = memory.add_subparsers(dest="memory_command", metavar="COMMAND", required=True)
    p = cmds.add_parser("search", parents=[common], help="closest memories of a namespace")
    p.add_argument("namespace", type=_namespace)
    p.add_argument("query", type=_query)
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=_search)
    p = cmds.add_parser("list", parents=[common], help="namespaces, or the memories of one")
    p.add_argument("namespace", nargs="?", type=_namespace)
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_list)
    p = cmds.add_parser("forget", parents=[common], help="erase a key or a whole namespace")
    p.add_argument("namespace", type=_namespace)
    p.add_argument("key", nargs="?")
    p.add_argument("--reason", default="")
    p.add_argument("--by", help="who asked for the erasure")
    p.set_defaults(func=_forget)
    p = cmds.add_parser("rebuild", parents=[common], help="drop the index, replay the ledger")
    p.set_defaults(func=_rebuild)
    p = cmds.add_parser("episodes", parents=[common], help="past tasks, newest first")
    p.add_argument("--workflow-name", help="of this workflow")
    p.add_argument("--user")
    p.add_argument("--session")
    p.add_argument("--limit", type=int, default=10)
    p.set_defaults(func=_episodes)
    p = cmds.add_parser(
        "project", parents=[common], help="the distributed shape: feed the index from Kafka"
    )
    p.add_argument("--kafka", required=True, metavar="BOOTSTRAP", help="host:port,...")
    p.add_argument("--prefix", default="agentledger", help="topic prefix (<prefix>.events)")
    p.add_argument("--until-caught-up", action="store_true", help="stop once all is read")
    p.set_defaults(func=_project)
