"""The runner contract: the same scripted scenarios on the embedded runner and on the Kafka
worker (its core over in-memory topics, and the `agentledger worker` process on Apache
Kafka, with either consumer runtime) leave the same events: the same types, agents, subtasks and tools, each caused by
the same kind of event. Ids, timestamps and the order of parallel branches may differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.runners import (
    SCENARIOS,
    Scenario,
    run_embedded,
    run_kafka_worker,
    run_memory_worker,
    shape,
)

pytest_plugins = ["tests.support.kafka_fixtures"]

BY_NAME = {s.name: s for s in SCENARIOS}


@pytest.fixture(params=sorted(BY_NAME))
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return BY_NAME[request.param]


async def test_the_scenario_ends_the_same_on_the_worker_core(
    scenario: Scenario, tmp_path: Path
) -> None:
    expected = await run_embedded(scenario, tmp_path / "embedded")
    assert expected[-1].type == "task_completed"
    for members in (1, 2):
        got = await run_memory_worker(scenario, tmp_path / f"memory{members}", members=members)
        assert shape(got) == shape(expected), members


@pytest.mark.integration
@pytest.mark.parametrize("consumer", ["faust", "aiokafka"])
async def test_the_scenario_ends_the_same_on_a_worker_process(
    scenario: Scenario, consumer: str, tmp_path: Path, kafka_broker: str, kafka_prefix: str
) -> None:
    expected = await run_embedded(scenario, tmp_path / "embedded")
    home = tmp_path / "worker"
    home.mkdir()
    got = await run_kafka_worker(scenario, home, kafka_broker, kafka_prefix, consumer=consumer)
    assert shape(got) == shape(expected)
