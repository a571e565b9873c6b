"""Resolving "package.module:attribute" references from workflow files."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from agentledger.errors import ConfigurationError


def load_object(ref: str, *, base_dir: Path | None = None, what: str = "object") -> Any:
    """Import ``module:attr`` (``attr`` may be dotted). ``base_dir`` is put on sys.path first,
    so a workflow's own modules are found beside it."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{what} reference {ref!r} must look like 'package.module:name'")
    if base_dir is not None:
        path = str(base_dir.resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        where = f" (looked beside {base_dir} and on sys.path)" if base_dir else ""
        raise ConfigurationError(
            f"cannot import {module_name!r} for {what} {ref!r}{where}: {exc}"
        ) from exc
    except Exception as exc:  # the module itself raised while importing: its bug, named
        raise ConfigurationError(
            f"importing {module_name!r} for {what} {ref!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigurationError(
                f"{module_name!r} has no {attr!r} (needed for {what} {ref!r})"
            ) from None
    return obj
