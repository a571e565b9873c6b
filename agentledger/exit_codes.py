"""The exit codes of every ``agentledger`` command.

0 success; 1 the task failed or was cancelled; 2 bad usage or input; 3 the task is not
finished (it waits, e.g. for an approval, or the run was stopped by a signal); 4 the ledger
could not be read or written (missing, read-only, locked, malformed, replaced) or the task
is quarantined; 5 another live process drives the task (its lease).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNFINISHED, EXIT_LOG, EXIT_LEASED = 0, 1, 2, 3, 4, 5
