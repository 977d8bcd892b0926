"""The engine's contracts: every sink follows the sink protocol; every job is one engine loop."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from pg2edge.pipeline.kafka.replica import _MirroredSink
from pg2edge.pipeline.sinks.base import Sink
from pg2edge.pipeline.sinks.kafka import KafkaSink
from pg2edge.pipeline.sinks.sqlite import SqliteSink
from pg2edge.pipeline.sinks.tenants import TenantSink
from pg2edge.pipeline.tenants.kafka_replica import PartitionedSink, PartitionSink

REPO = Path(__file__).resolve().parents[1]
SINKS = [SqliteSink, _MirroredSink, TenantSink, KafkaSink, PartitionSink, PartitionedSink]
PROTOCOL = {name: inspect.signature(getattr(Sink, name)) for name in ("position", "apply", "control", "maintain",
                                                                      "close")}


@pytest.mark.parametrize("cls", SINKS, ids=lambda c: c.__name__)
def test_every_sink_follows_the_protocol(cls: type) -> None:
    for name, want in PROTOCOL.items():
        have = inspect.signature(getattr(cls, name))
        assert list(have.parameters)[: len(want.parameters)] == list(want.parameters), (cls.__name__, name)
        extra = list(have.parameters.values())[len(want.parameters):]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (cls.__name__, name, extra)
    assert "self.label" in inspect.getsource(cls) or cls is _MirroredSink, f"{cls.__name__} names no target"


def test_a_sqlite_sink_instance_is_a_sink(tmp_path: Path) -> None:
    from pg2edge.pipeline.sinks.sqlite import open_replica

    db = open_replica(tmp_path / "r.db")
    try:
        sink = SqliteSink(db, {}, label="r.db")
        assert isinstance(sink, Sink)
        assert sink.position() is None
    finally:
        db.close()


JOBS = ["pipeline/daemon.py", "pipeline/tenants/daemon.py", "pipeline/kafka/publisher.py",
        "pipeline/kafka/replica.py", "pipeline/tenants/kafka_replica.py"]


@pytest.mark.parametrize("path", JOBS)
def test_every_job_is_a_pairing_run_by_the_engine(path: str) -> None:
    """No job keeps a stream loop of its own: the one loop is pipeline/engine.py."""
    text = (REPO / path).read_text()
    assert "engine.run(" in text or "stream_slot(" in text  # stream_slot: CdcSource into the sink, by engine.run
    assert not re.search(r"^\s+while True:", text, re.M), f"{path} has its own loop"
