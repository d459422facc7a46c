"""Processes under test: start pinned to a core, wait until they answer, read their CPU time and memory, stop."""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def raise_own_fd_limit() -> None:
    _raise_fd_limit()


@dataclass
class Proc:
    """One started process group: the command, its log, and the pid whose tree is measured."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def cpu_seconds(self) -> float:
        return sum(_cpu_ticks(pid) for pid in self.tree()) / CLOCK_TICKS

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds of the tree by role: each helper process by its module (`log_worker`, `span_worker`), the
        rest (supervisor, workers) as `gateway`."""
        found: dict[str, float] = {}
        for pid in self.tree():
            role = _role(pid)
            found[role] = found.get(role, 0.0) + _cpu_ticks(pid) / CLOCK_TICKS
        return found

    def rss_mb(self) -> float:
        return sum(_rss_kb(pid) for pid in self.tree()) / 1024

    def pss_mb(self) -> float:
        """Proportional set size summed over the tree: a page shared by n processes counts 1/n in each, so pages a
        forked worker still shares with its supervisor count once (RSS counts them in both)."""
        return sum(_pss_kb(pid) for pid in self.tree()) / 1024

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)
        except ProcessLookupError:
            pass


def start(name: str, cmd: Sequence[str], *, cpus: str | None, log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start `cmd` in its own session, pinned with taskset to `cpus` (None: unpinned), output to a log file."""
    log = log_dir / f"{name}.log"
    argv = ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env,
                                 cwd=cwd, start_new_session=True, preexec_fn=_raise_fd_limit)
    return Proc(name, popen, log)


def wait_ready(proc: Proc, port: int, probe: Callable[[http.client.HTTPConnection], int], timeout: float) -> int:
    """Poll until `probe` returns a status below 500, or fail with the log tail; returns the status seen."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}): {proc.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            status = probe(conn)
            if status < 500:
                return status
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f}s ({last}): {proc.log_tail()}")


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, ...] (utime is index 11, stime 12)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw[raw.rindex(")") + 2:].split()


HELPERS = ("log_worker", "span_worker")


def _role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gateway"
    return next((helper for helper in HELPERS if helper.encode() in command), "gateway")


def _cpu_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0


def _rss_kb(pid: int) -> int:
    try:
        pages = Path(f"/proc/{pid}/statm").read_text().split()[1]
    except (OSError, IndexError):
        return 0
    return int(pages) * PAGE_KB


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            return next((int(line.split()[1]) for line in rollup if line.startswith("Pss:")), 0)
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class RssSampler:
    """Samples a process tree's resident memory in a thread; `peak` is the largest RSS seen, `peak_pss` the largest
    PSS (read every fifth sample: smaps_rollup walks the page tables)."""

    proc: Proc
    interval: float = 0.1
    peak: float = 0.0
    peak_pss: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        samples = 0
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.rss_mb())
            if samples % 5 == 0:
                self.peak_pss = max(self.peak_pss, self.proc.pss_mb())
            samples += 1
            self._stop.wait(self.interval)
