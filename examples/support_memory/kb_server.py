"""The support example's MCP server (stdio), built with the official ``mcp`` SDK.

A stand-in for a company's knowledge base and helpdesk: ``lookup`` finds an article by
topic, ``create_ticket`` opens a ticket (kept in this process; the id is derived from the
customer and summary, so the same request gives the same ticket).

    python kb_server.py        # speaks MCP on stdin/stdout
"""

from __future__ import annotations

import hashlib
from typing import Literal

from mcp.server.mcpserver import MCPServer

server = MCPServer("support-kb")

ARTICLES = {
    "refund": "Refunds: items can be returned within 30 days of delivery for a full refund "
    "to the original payment method; refunds are issued within 5 working days of receipt.",
    "shipping": "Shipping: standard delivery takes 3-5 working days; express delivery the "
    "next working day when ordered before 14:00.",
    "warranty": "Warranty: all appliances carry a 2-year warranty against manufacturing "
    "defects; keep the receipt as proof of purchase.",
}
TICKETS: dict[str, dict[str, str]] = {}


@server.tool(
    description="Find the knowledge-base article about a topic (refund, shipping, warranty)"
)
def lookup(topic: str) -> str:
    return ARTICLES.get(topic.lower().strip(), f"no article about {topic!r}")


@server.tool(description="Open a helpdesk ticket for a person to handle")
def create_ticket(
    customer: str, summary: str, priority: Literal["low", "normal", "high"] = "normal"
) -> dict[str, str]:
    ticket = "SUP-" + hashlib.sha256(f"{customer}|{summary}".encode()).hexdigest()[:6].upper()
    TICKETS[ticket] = {"customer": customer, "summary": summary, "priority": priority}
    return {"ticket": ticket, "priority": priority, "status": "open"}


if __name__ == "__main__":
    server.run("stdio")
