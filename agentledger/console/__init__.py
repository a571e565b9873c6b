"""The web console: runs, one run live (DAG, timeline, calls, replay), approvals, analytics.

``agentledger ui`` serves it (``console.cli``); ``build_app`` is the ASGI app.
"""

from agentledger.console.app import build_app
from agentledger.console.source import ConsoleSource

__all__ = ["ConsoleSource", "build_app"]
