"""Shared fixtures. Component fixtures (broker, HTTP servers) live in tests/support."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.kafka_fixtures", "tests.support.phoenix", "tests.support.cli"]


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an AGENTLEDGER_HOME of its own (a test may still set another), so no
    test writes a vault or sandbox into the checkout's ./.agentledger."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AGENTLEDGER_HOME", str(home))
    return home
