"""Apache Kafka for tests, benchmarks and local use: one KRaft node on loopback.

The broker is the real thing: ``org.apache.kafka:kafka_2.13`` (version in
``tests/kafka/pom.xml``), its jars fetched by Maven into a cache directory, started as
``java kafka.Kafka server.properties`` with a combined broker+controller, on free
``127.0.0.1`` ports, with a small JVM (the machine is shared). Its data lives in a
temporary directory removed when it stops.

Example::

    with running_broker() as broker:
        ...  # use broker.bootstrap, e.g. "127.0.0.1:40123"

For local use (prints the bootstrap address, runs until Ctrl-C)::

    scripts/kafka-broker [--port 9092] [--data DIR]

Environment: ``AGENTLEDGER_KAFKA_JARS`` (a directory holding the broker's jars; default
``~/.cache/agentledger/kafka-<version>-<pom hash>``, filled by ``mvn`` on first use),
``AGENTLEDGER_KAFKA_HEAP`` (default ``512m``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "tests" / "kafka" / "pom.xml"
_KEEP_LINES = 400
# The JVM for a 2-core machine shared with other processes: a small fixed heap, the serial
# collector (no GC threads competing with the workers), few compiler threads.
JVM_OPTIONS = (
    "-Xss1m",
    "-XX:+UseSerialGC",
    "-XX:CICompilerCount=2",
    "-XX:MaxMetaspaceSize=256m",
    "-Djava.awt.headless=true",
    "-Dlog4j2.formatMsgNoLookups=true",
)


class BrokerStartError(RuntimeError):
    """The broker could not be started; the message carries its last output."""


def kafka_version() -> str:
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if found is None:
        raise BrokerStartError(f"{POM} names no <kafka.version>")
    return found.group(1)


def jars_dir() -> Path:
    """The directory of the broker's jars, fetched with Maven on first use (locked)."""
    configured = os.environ.get("AGENTLEDGER_KAFKA_JARS")
    # Keyed by the pom's content as well, so a changed pom never meets stale jars.
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:10]
    target = (
        Path(configured)
        if configured
        else Path.home() / ".cache" / "agentledger" / f"kafka-{kafka_version()}-{digest}"
    )
    done = target / ".complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other test sessions may be fetching the same jars
        if done.exists():
            return target
        fetch_jars(target)
        done.touch()
    return target


def fetch_jars(target: Path) -> None:
    """``mvn dependency:copy-dependencies`` of tests/kafka/pom.xml into ``target``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerStartError("Maven (mvn) is not installed; it fetches Apache Kafka's jars")
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not any(target.glob("kafka_2.13-*.jar")):
        raise BrokerStartError(
            f"mvn could not fetch Kafka's jars into {target} (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_properties(data: Path, port: int, controller_port: int) -> str:
    """A single-node KRaft broker+controller on loopback, sized for tests."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data / "log"),
        # agentledger creates its topics itself (`kafka init`), with their settings; a
        # broker that invents a topic on a typo would hide the mistake.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # One node: every internal topic has one replica, and few partitions (the defaults,
        # 50 of each, cost seconds at the first group join or transaction).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # A group starts as soon as its first member joins (tests join one at a time).
        "group.initial.rebalance.delay.ms": "0",
        "group.consumer.min.session.timeout.ms": "1000",
        "group.min.session.timeout.ms": "1000",
        # Few threads: the machine is shared.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "num.replica.fetchers": "1",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


LOG4J2 = """\
# Warnings and up, plus the lines that say the server started or stopped.
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
logger.state.name = state.change.logger
logger.state.level = error
"""


@dataclass
class RunningBroker:
    """A started broker process. ``stop()`` ends it (idempotent), ``kill()`` SIGKILLs it."""

    port: int
    process: subprocess.Popen[bytes]
    data: Path
    owns_data: bool = True
    _lines: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_KEEP_LINES)
    )
    _reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return "\n".join(self._lines)

    def _drain(self) -> None:
        # Read until EOF so the broker never blocks on a full pipe.
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.append(raw.decode("utf-8", "replace").rstrip())

    def kill(self) -> None:
        """End the broker at once (SIGKILL), as a lost machine would."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
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
        if self.owns_data:
            shutil.rmtree(self.data, ignore_errors=True)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise BrokerStartError("no java found (install a JDK 17+, or set JAVA_HOME)")
    return java


def _megabytes(heap: str) -> int:
    number = int(re.sub(r"[^0-9]", "", heap) or "512")
    unit = heap[-1:].lower()
    return number * 1024 if unit == "g" else number if unit == "m" else number // (1024 * 1024)


def _prepare(data: Path, port: int, controller_port: int, heap: str) -> tuple[list[str], Path]:
    """Write the configuration and format the storage; returns the broker's command."""
    jars = jars_dir()
    data.mkdir(parents=True, exist_ok=True)
    config = data / "server.properties"
    config.write_text(server_properties(data, port, controller_port))
    log_config = data / "log4j2.properties"
    log_config.write_text(LOG4J2)
    already = (data / "log" / "meta.properties").exists()
    if not already:
        # Kafka's own cluster id format: a random UUID in URL-safe base64 without padding.
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        command = _command(jars, log_config, heap, "kafka.tools.StorageTool")
        formatted = subprocess.run(
            [
                *command,
                "format",
                "--ignore-formatted",
                f"--cluster-id={cluster}",
                "-c",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise BrokerStartError(
                f"formatting the broker's storage failed (exit {formatted.returncode}):\n"
                f"{formatted.stdout[-4000:]}{formatted.stderr[-4000:]}"
            )
    return [*_command(jars, log_config, heap, "kafka.Kafka"), str(config)], jars


def _command(jars: Path, log_config: Path, heap: str, main: str) -> list[str]:
    return [
        _java(),
        f"-Xms{min(64, _megabytes(heap))}m",
        f"-Xmx{heap}",
        *JVM_OPTIONS,
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp",
        f"{jars}/*",
        main,
    ]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the process that started the broker dies,
    so a killed test session never leaves a 512 MB JVM behind on a shared machine."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _launch(command: list[str], port: int, data: Path, *, owns_data: bool) -> RunningBroker:
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops us
        preexec_fn=_die_with_parent,
    )
    broker = RunningBroker(port, process, data, owns_data)
    broker._reader = threading.Thread(target=broker._drain, name=f"kafka-{port}", daemon=True)
    broker._reader.start()
    return broker


async def _answers_admin(bootstrap: str, deadline: float, process: subprocess.Popen[bytes]) -> None:
    last: Exception | None = None
    host, _, port = bootstrap.rpartition(":")
    while time.monotonic() < deadline and process.poll() is None:
        # Wait for the listener quietly: aiokafka logs every refused connection.
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                pass
        except OSError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except KafkaError as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.1)  # back off before retrying the connection
    if process.poll() is not None:
        raise BrokerStartError(f"broker exited with code {process.returncode} while starting")
    raise BrokerStartError(f"broker at {bootstrap} never answered an admin request: {last}")


def wait_until_serving(
    bootstrap: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until an aiokafka admin client can list topics (raises BrokerStartError)."""
    deadline = time.monotonic() + timeout
    watched = process if process is not None else _NeverEnds()
    # A thread of its own, so this works whether or not the caller runs an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _answers_admin(bootstrap, deadline, watched)).result()  # type: ignore[arg-type]


class _NeverEnds:
    returncode = None

    def poll(self) -> None:
        return None


def start_broker(
    *,
    attempts: int = 3,
    ready_timeout: float = 90.0,
    port: int | None = None,
    data: Path | None = None,
    heap: str | None = None,
) -> RunningBroker:
    """Start a broker on free loopback ports (or ``port``), retrying when a port is taken.

    Ready means an admin client listed topics. Raises BrokerStartError (never skips) when it
    cannot be started. ``data`` keeps the log there (kept after stop); by default a
    temporary directory is used and removed at stop.
    """
    heap = heap or os.environ.get("AGENTLEDGER_KAFKA_HEAP", "512m")
    failures: list[str] = []
    for _ in range(attempts):
        owns = data is None
        where = Path(tempfile.mkdtemp(prefix="agentledger-kafka-")) if data is None else data
        chosen = port or _free_port()
        try:
            command, _ = _prepare(where, chosen, _free_port(), heap)
        except BrokerStartError:
            if owns:
                shutil.rmtree(where, ignore_errors=True)
            raise
        broker = _launch(command, chosen, where, owns_data=owns)
        try:
            wait_until_serving(broker.bootstrap, ready_timeout, broker.process)
        except BrokerStartError as exc:
            broker.stop()
            failures.append(f"port {chosen}: {exc}; output:\n{broker.output()}")
            continue
        return broker
    raise BrokerStartError(
        f"could not start Apache Kafka after {attempts} attempts:\n" + "\n".join(failures)
    )


@contextlib.contextmanager
def running_broker(**options: object) -> Iterator[RunningBroker]:
    """Start a broker for the ``with`` block and stop it afterwards."""
    broker = start_broker(**options)  # type: ignore[arg-type]
    try:
        yield broker
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    """Run a broker in the foreground for local use until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Run Apache Kafka (one KRaft node) on loopback.")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--data", type=Path, default=None, help="keep the log here")
    parser.add_argument("--heap", default=None, help="JVM heap, e.g. 512m (default)")
    args = parser.parse_args(argv)
    try:
        broker = start_broker(port=args.port, data=args.data, heap=args.heap, attempts=1)
    except BrokerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(f"kafka ready: {broker.bootstrap} (data {broker.data}); Ctrl-C stops it", flush=True)
    while not stopping.is_set() and broker.process.poll() is None:
        stopping.wait(0.5)
    code = broker.process.poll()
    broker.stop()
    if code is not None:
        print(f"error: the broker exited with code {code}:\n{broker.output()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
