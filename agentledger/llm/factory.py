"""Model settings in, a ``ChatModel`` out.

::

    model = build_model(ModelSettings(provider="openai", model="gpt-4o-mini"))
    models = build_models({"planner": s1, "researcher": s2}, base_dir=workflow_dir)

``provider``:

* ``scripted`` — a ``ScriptedModel`` around ``settings.script``: ``"package.module:name"``
  or ``"path/to/file.py:name"``, resolved relative to ``base_dir`` (the workflow file's
  folder). ``name`` is a function ``(ModelRequest) -> ModelResponse`` (sync or async) or a
  mapping of scripted turns per agent.
* ``openai`` / ``azure`` — an ``OpenAIChatModel``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import cast

from agentledger._imports import load_object
from agentledger.errors import ConfigurationError
from agentledger.llm.base import ChatModel, ModelSettings
from agentledger.llm.openai_client import OpenAIChatModel, RetryPolicy
from agentledger.llm.scripted import ScriptedModel, ScriptFunction, Turn

__all__ = ["build_model", "build_models", "load_script"]

PROVIDERS = ("scripted", "openai", "azure")
ScriptSource = Mapping[str, Sequence[Turn]] | ScriptFunction


def build_model(
    settings: ModelSettings,
    *,
    base_dir: Path | None = None,
    api_key_file: Path | None = None,
    api_version: str | None = None,
    retry: RetryPolicy | None = None,
) -> ChatModel:
    """Build the model ``settings`` describe.

    ``api_key_file``, ``api_version`` (Azure) and ``retry`` are passed to
    ``OpenAIChatModel``; the scripted provider ignores them. Raises ``ConfigurationError``
    for an unknown provider, a script that cannot be imported, or a missing API key.
    """
    if settings.provider == "scripted":
        if not settings.script:
            raise ConfigurationError(
                f"model {settings.model!r} uses provider 'scripted' but names no script; set "
                "model.script to 'package.module:function' (or 'file.py:function')"
            )
        script = cast(ScriptSource, load_script(settings.script, base_dir=base_dir))
        return ScriptedModel(script, name=settings.model)
    if settings.provider in ("openai", "azure"):
        return OpenAIChatModel(
            settings,
            api_key_file=api_key_file,
            api_version=api_version,
            retry=retry,
            base_dir=base_dir,
        )
    raise ConfigurationError(
        f"unknown model provider {settings.provider!r}; use one of {', '.join(PROVIDERS)}"
    )


def build_models(
    settings_by_name: Mapping[str, ModelSettings],
    *,
    base_dir: Path | None = None,
    api_key_file: Path | None = None,
    api_version: str | None = None,
    retry: RetryPolicy | None = None,
) -> dict[str, ChatModel]:
    """One model per agent name, sharing one model object among equal settings (so agents
    on the same endpoint share its connection pool and what it learned about the server)."""
    built: dict[ModelSettings, ChatModel] = {}
    result: dict[str, ChatModel] = {}
    for name, settings in settings_by_name.items():
        if settings not in built:
            built[settings] = build_model(
                settings,
                base_dir=base_dir,
                api_key_file=api_key_file,
                api_version=api_version,
                retry=retry,
            )
        result[name] = built[settings]
    return result


def load_script(reference: str, *, base_dir: Path | None = None) -> object:
    """Resolve ``"package.module:name"`` or ``"path/file.py:name"`` to the named object."""
    module_part, sep, attr = reference.partition(":")
    if not sep or not module_part or not attr:
        raise ConfigurationError(
            f"model script {reference!r} must look like 'package.module:function' "
            "or 'path/to/file.py:function'"
        )
    if module_part.endswith(".py"):
        module = _load_file(module_part, base_dir, reference)
        target: object = module
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ConfigurationError(
                    f"model script {reference!r}: {module_part!r} has no attribute {attr!r}"
                ) from None
    else:
        with _on_sys_path(base_dir):
            target = load_object(reference, base_dir=base_dir, what="model script")
    if not callable(target) and not isinstance(target, Mapping):
        raise ConfigurationError(
            f"model script {reference!r} is a {type(target).__name__}; it must be a function "
            "(ModelRequest) -> ModelResponse or a mapping of scripted turns per agent"
        )
    return target


def _load_file(path_text: str, base_dir: Path | None, reference: str) -> ModuleType:
    path = Path(path_text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigurationError(f"model script {reference!r}: no file at {path}")
    name = f"_agentledger_script_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"model script {reference!r}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    with _on_sys_path(path.parent):
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigurationError(
                f"model script {reference!r}: {path} raised {type(exc).__name__}: {exc}"
            ) from exc
    return module


@contextmanager
def _on_sys_path(directory: Path | None) -> Iterator[None]:
    """Put ``directory`` first on ``sys.path`` while importing, if it is not there yet."""
    entry = str(directory.resolve()) if directory is not None else None
    if entry is None or entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)
