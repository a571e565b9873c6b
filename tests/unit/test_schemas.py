import json
from pathlib import Path

import pytest

from agentledger.schemas import EVENT_TYPES, GoalSubmitted, WorkflowRef, decode, encode
from agentledger.schemas.codec import EventDecodeError, EventTooLargeError
from agentledger.schemas.export import export_schemas
from agentledger.schemas.upcasters import unregister, upcaster

SAMPLES = Path(__file__).parent.parent / "contract" / "samples"


def test_every_event_type_has_a_saved_sample():
    saved = {p.name.split(".")[0] for p in SAMPLES.glob("*.json")}
    assert saved == set(EVENT_TYPES)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_saved_samples_decode_and_reencode_identically(path: Path):
    raw = path.read_bytes()
    event = decode(raw)
    assert event.type == path.name.split(".")[0]
    assert json.loads(encode(event)) == json.loads(raw)


def test_occurred_at_is_utc_and_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone"):
        GoalSubmitted(
            task_id="t", goal="g", workflow=WorkflowRef(name="w"), occurred_at="2026-01-01T10:00:00"
        )
    e = GoalSubmitted(
        task_id="t",
        goal="g",
        workflow=WorkflowRef(name="w"),
        occurred_at="2026-01-01T10:00:00+02:00",
    )
    assert e.occurred_at.utcoffset().total_seconds() == 0
    assert e.occurred_at.hour == 8


def test_event_ids_are_unique_and_time_ordered():
    ids = [
        GoalSubmitted(task_id="t", goal="g", workflow=WorkflowRef(name="w")).event_id
        for _ in range(2000)
    ]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\xff not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (
            b'{"type": "warp_drive_engaged", "task_id": "t"}',
            "unknown event type 'warp_drive_engaged'",
        ),
        (b'{"type": "goal_submitted", "task_id": "t"}', "invalid goal_submitted event"),
        (
            b'{"type": "goal_submitted", "task_id": "t", "goal": "g", "workflow": {"name": "w"}, "bogus": 1}',
            "bogus",
        ),
    ],
)
def test_bad_bytes_give_a_clear_decode_error(data: bytes, reason: str):
    with pytest.raises(EventDecodeError, match=reason):
        decode(data)


def test_newer_schema_version_than_the_code_is_refused_clearly():
    raw = json.loads((SAMPLES / "goal_submitted.v1.json").read_text())
    raw["schema_version"] = 7
    with pytest.raises(EventDecodeError, match="newer than this code"):
        decode(json.dumps(raw))


def test_upcaster_brings_an_old_version_up_to_date(monkeypatch: pytest.MonkeyPatch):
    # Pretend goal_submitted moved to v2, renaming `goal` from a v1 field `objective`.
    monkeypatch.setattr(GoalSubmitted, "SCHEMA_VERSION", 2)
    raw = json.loads((SAMPLES / "goal_submitted.v1.json").read_text())
    raw["objective"] = raw.pop("goal")

    @upcaster("goal_submitted", from_version=1)
    def _rename(data):
        data["goal"] = data.pop("objective")
        return data

    try:
        event = decode(json.dumps(raw))
    finally:
        unregister("goal_submitted", from_version=1)
    assert event.goal == "Write a brief on idempotency keys"
    assert event.schema_version == 2


def test_missing_upcaster_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(GoalSubmitted, "SCHEMA_VERSION", 2)
    with pytest.raises(EventDecodeError, match="no upcaster from v1"):
        decode((SAMPLES / "goal_submitted.v1.json").read_bytes())


def test_oversize_events_are_refused_at_encode():
    big = GoalSubmitted(
        task_id="t", goal="g", workflow=WorkflowRef(name="w"), inputs={"blob": "x" * 1_100_000}
    )
    with pytest.raises(EventTooLargeError, match="over the"):
        encode(big)


def test_json_schema_export_covers_every_event(tmp_path: Path):
    written = export_schemas(tmp_path)
    names = {p.name for p in written}
    assert names == {f"{t}.schema.json" for t in EVENT_TYPES} | {"event.schema.json"}
    goal = json.loads((tmp_path / "goal_submitted.schema.json").read_text())
    assert set(goal["required"]) >= {"task_id", "goal", "workflow"}
    union = json.loads((tmp_path / "event.schema.json").read_text())
    assert union["discriminator"]["propertyName"] == "type"
    assert len(union["oneOf"]) == len(EVENT_TYPES)


def test_encode_writes_what_orjson_wrote_and_decode_reads_it_back():
    import orjson

    from agentledger.schemas import AgentOutputProduced

    values = [0.1, 1e16, 5e-324, -0.0, "é😀\u2028\x00</script>", {"a": [1, 2.5, None, True]}]
    for value in values:
        event = AgentOutputProduced(task_id="t", subtask_id="s", seq=3, output=value)
        assert encode(event) == orjson.dumps(event.model_dump(mode="json"))
        assert decode(encode(event)) == event
    big = AgentOutputProduced(task_id="t", subtask_id="s", output=2**80)
    assert decode(encode(big)).output == 2**80  # exact, no longer refused on write
    with pytest.raises(TypeError):  # a lone surrogate is refused, as before
        encode(AgentOutputProduced(task_id="t", subtask_id="s", output="\ud800"))


def test_event_ids_differ_in_a_forked_child():
    import os

    from agentledger.schemas import new_event_id

    new_event_id()  # the parent holds unread random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child[19:] != new_event_id()[19:]  # the random tails


def test_event_ids_made_in_threads_at_once_are_unique() -> None:
    import threading

    from agentledger.schemas.envelope import new_event_id

    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(new_event_id() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for into in made for i in into]
    assert len(set(ids)) == len(ids) == 80_000
