"""Masking of Python log records: personal data and secrets never reach a log handler.

``install_log_redaction()`` (called by the CLI and the runners) wraps the log record
factory, so every record is masked when it is created: whatever handlers exist (the CLI's
stderr, pytest's caplog, a JSON shipper) and whichever logger wrote it (agentledger's own,
or httpx logging a URL). The message is formatted, masked and frozen; an exception's
traceback text is rendered and masked too.
"""

from __future__ import annotations

import logging
from typing import Any

from agentledger.redaction import redact_text

__all__ = ["install_log_redaction"]


class _Masking:
    """A record factory that masks what the wrapped factory creates."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the handler report it as usual
            return record
        # args=() rather than None: formatters that re-wrap args (faust's mode turns None
        # into (None,)) would then try "msg % (None,)" and print a logging-error traceback.
        record.msg, record.args = redact_text(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return record


def install_log_redaction() -> None:
    """Mask every log record from now on (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _Masking):
        logging.setLogRecordFactory(_Masking(factory))
