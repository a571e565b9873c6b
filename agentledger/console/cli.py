"""``agentledger ui``: serve the web console.

::

    agentledger ui [--db PATH | --brokers HOST:PORT --clickhouse URL] [--host 127.0.0.1]
                   [--port 8765] [--token TOKEN]

``--port 0`` takes a free port; the address is printed and written to
``$AGENTLEDGER_HOME/console.json`` (``agentledger run`` then prints a link to its run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path
from typing import Any, TextIO

from agentledger.console.security import Guard, check_bind
from agentledger.errors import UsageError
from agentledger.settings import Settings

EXIT_OK = 0


def register(sub: Any) -> None:
    from agentledger.streams.kafka_cli import add_connection_options

    p = sub.add_parser("ui", help="serve the web console (runs, approvals, analytics)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="0 takes a free port")
    p.add_argument(
        "--token",
        default=os.environ.get("AGENTLEDGER_CONSOLE_TOKEN"),
        help="access token (default: $AGENTLEDGER_CONSOLE_TOKEN); required off loopback",
    )
    p.add_argument("--clickhouse", help="ClickHouse URL of the audit table (distributed shape)")
    add_connection_options(p, required=False)
    p.set_defaults(func=cmd_ui)


async def cmd_ui(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    import uvicorn

    from agentledger.console.app import build_app
    from agentledger.console.discovery import announce, withdraw
    from agentledger.console.source import ConsoleSource

    check_bind(args.host, args.token)
    if args.brokers:
        from agentledger.streams.kafka_cli import open_kafka_log

        log: Any = await open_kafka_log(args)
        ledger: Path | None = None
    else:
        from agentledger.cli_ledger import open_ledger

        log = open_ledger(args, settings, create=True)  # a console may start before the first run
        ledger = Path(log.path)
    source = ConsoleSource(
        log=log,
        settings=settings,
        ledger=ledger,
        brokers=args.brokers,
        prefix=args.prefix,
        clickhouse=args.clickhouse,
    )
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        await source.close()
        raise UsageError(
            f"cannot serve the console on {args.host}:{args.port}: {exc.strerror}; "
            "pick another --port (0 takes a free one)"
        ) from None
    sock.listen(128)  # connections queue from now on, so the announced address answers
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}"
    announced = announce(settings.home, url, ledger)
    app = build_app(source, Guard(token=args.token), on_stop=lambda: withdraw(announced))
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    where = f"ledger {ledger}" if ledger else f"Kafka {args.brokers}"
    print(f"agentledger console on {url}/ ({where}); Ctrl-C stops it", file=out, flush=True)
    if args.token:
        print(f"open {url}/?token=… with the access token", file=out, flush=True)
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        pass
    finally:
        withdraw(announced)
        sock.close()
    return EXIT_OK
