"""Who may see and decide: loopback by default, an access token otherwise, CSRF on decisions.

* ``check_bind`` refuses a non-loopback host without a token (a console on a shared
  interface would show every run to anyone who can reach the port).
* With a token, every request must carry it: ``Authorization: Bearer TOKEN``, or the
  HttpOnly cookie set when the page is opened once as ``/?token=TOKEN``.
* Without a token, the ``Host`` header must name loopback (a DNS-rebinding page cannot
  reach the console through a name it controls).
* A decision (POST) must also carry ``X-CSRF-Token`` equal to the per-process value the
  page was served with, and an ``Origin``, when sent, must be the console's own. A page of
  another origin can neither read that value nor send the header without a preflight the
  console never grants.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agentledger.errors import UsageError

TOKEN_COOKIE = "agentledger_console_token"
CSRF_HEADER = "x-csrf-token"
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond loopback without an access token."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"refusing to bind the console to {host}: it is not a loopback address and no "
            "access token is set; pass --token (or AGENTLEDGER_CONSOLE_TOKEN), or bind 127.0.0.1"
        )


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


@dataclass(frozen=True)
class Guard:
    token: str | None = None
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def allows(self, headers: dict[str, str], cookies: dict[str, str]) -> bool:
        """May this request read the console?"""
        if self.token is None:
            return is_loopback(_host_name(headers.get("host", "")))
        auth = headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else cookies.get(TOKEN_COOKIE, "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def token_matches(self, given: str | None) -> bool:
        return (
            self.token is not None
            and given is not None
            and hmac.compare_digest(given.encode(), self.token.encode())
        )

    def decision_problem(self, headers: dict[str, str]) -> str | None:
        """Why a state-changing request is refused (None: it passes the CSRF check)."""
        sent = headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
            return "missing or wrong CSRF token; reload the console page and try again"
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != headers.get("host", ""):
            return f"cross-origin request from {origin} refused"
        return None
