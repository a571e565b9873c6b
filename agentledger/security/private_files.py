"""Owner-only files and directories for what holds raw or masked data.

The ledger, its WAL files, the vault and the tools' sandbox hold what agents saw: they are
created readable by their owner only (files 0600, directories 0700), whatever the umask.
SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, so creating
the database file owner-only covers them.

Only directories created here are made 0700: the ledger may live in a directory the user
shares on purpose (a project folder), which is not ours to change.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["private_dir", "private_file"]


def private_dir(path: Path) -> Path:
    """``path`` as a directory; each directory created on the way is 0700."""
    missing: list[Path] = []
    at = path
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """``path`` as an existing file that only its owner can read and write.

    A file that exists already is tightened to 0600 when this user owns it (an older
    ledger created 0644); someone else's file is left as it is (reading it is theirs to
    allow)."""
    try:
        fd = os.open(
            path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except FileExistsError:
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            # best effort: an immutable or read-only-mounted ledger is still readable
            with contextlib.suppress(PermissionError, OSError):
                os.chmod(path, 0o600)
        return path
    try:
        os.fchmod(fd, 0o600)  # the mode given to open is filtered by the umask
    finally:
        os.close(fd)
    return path
