"""Pytest fixtures for tests against a real Kafka-protocol broker.

Load with ``pytest_plugins = ["tests.support.kafka_fixtures"]``. The broker starts once per
session, on first use; a test that needs it fails (never skips) when it cannot start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.kafka_broker import running_broker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Bootstrap address ("127.0.0.1:PORT") of a broker running for the whole session."""
    with running_broker() as broker:
        yield broker.bootstrap


@pytest.fixture
def kafka_prefix() -> str:
    """A topic prefix of this test's own, so tests sharing the broker never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"
