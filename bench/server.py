"""Start ``memtrace serve`` (or any server) for the benchmarks and give it a key."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now (from each process's parent in ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        out.append(todo.pop())
        todo += children.get(out[-1], [])
    return out


def _cpu_ticks(pid: int) -> int:
    """User and system clock ticks ``pid`` has run (0 once it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def machine_ticks() -> tuple[int, int]:
    """(busy, all) clock ticks of every core of the machine since it started."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and waiting on I/O
    return sum(fields[:8]) - idle, sum(fields[:8])


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it ended
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Server:
    """A server process on loopback, with its peak RSS sampled while a phase runs."""

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=self.log, env={**os.environ, **(env or {})}
        )
        self.peak_kb = 0
        self._sampling = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited early; see {log}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"server did not start; see {log}")

    def rss_mb(self) -> float:
        """The process's resident set now, in MB."""
        return self.rss_kb() / 1024

    def rss_kb(self) -> int:
        """The resident sets of the process and of every process it started (the ingest
        process, ``--workers``), now, in KiB."""
        return sum(_rss_kb(pid) for pid in _tree(self.proc.pid))

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time the process and each process it started, alive now, have run, by pid."""
        tick = os.sysconf("SC_CLK_TCK")
        return {pid: _cpu_ticks(pid) / tick for pid in _tree(self.proc.pid)}

    @contextmanager
    def sampling(self) -> Iterator[dict[str, int]]:
        """Sample RSS every 50 ms; the yielded dict gets ``peak_rss_kb`` on exit."""
        out: dict[str, int] = {}
        peak = [self.rss_kb()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], self.rss_kb())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield out
        finally:
            stop.set()
            thread.join()
            out["peak_rss_kb"] = peak[0]

    def stop(self) -> None:
        """SIGTERM, then wait."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def create_key(url: str, org: str) -> str:
    """Create ``org`` (if missing) and a read/write key for it, straight in the store."""
    from memtrace_server.service.admin import Admin
    from memtrace_server.storage.registry import stores_from_url

    async def run() -> str:
        stores = stores_from_url(url)
        await stores.open()
        try:
            admin = Admin(stores)
            if await stores.control.get_org(org) is None:
                await admin.create_org(org, org_id=org)
            key, _ = await admin.create_key(org, f"bench-{time.time_ns()}", "read,write")
            return key
        finally:
            await stores.close()

    return asyncio.run(run())


def sqlite_url(data_dir: Path) -> str:
    """The store URL ``memtrace serve --data-dir`` uses."""
    return f"sqlite:///{(data_dir / 'memtrace.db').resolve().as_posix()}"


def serve_memtrace(
    data_dir: Path,
    log: Path,
    store_url: str | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Server:
    """``memtrace serve`` on ``data_dir`` (or ``store_url``) with ``workers`` processes,
    production settings unless ``env`` says otherwise; its output goes to ``log``."""
    port = free_port()
    settings = {"MEMTRACE_LOG_LEVEL": "info", **(env or {})}
    if store_url:
        settings["MEMTRACE_STORE_URL"] = store_url
    return Server(
        [
            str(BIN / "memtrace"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--workers",
            str(workers),
        ],
        port,
        log,
        env=settings,
    )
