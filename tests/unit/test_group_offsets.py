"""The aiokafka consumer's offset rule (``kafka_group._Partition``): a partition commits only
its gap-free acknowledged prefix, from the first offset it was assigned at."""

from __future__ import annotations

from agentledger.streams.kafka_group import _Partition


def test_commits_stop_at_the_first_unacknowledged_record() -> None:
    part = _Partition()
    assert part.to_commit() is None  # nothing delivered yet: nothing to commit
    for offset in (10, 11, 12, 13):
        part.delivered(offset)
    part.ack(11)
    part.ack(12)
    assert part.to_commit() == 10  # 10 (a reaction still running) holds the commit back
    part.ack(10)
    assert part.to_commit() == 13  # 10-12 done: the next to read is 13
    part.committed = 13
    assert part.to_commit() is None  # already committed
    part.ack(13)
    assert part.to_commit() == 14
