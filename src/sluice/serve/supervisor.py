"""granian's supervisor as Sluice runs it: one listening socket of its own, and a config reload that is checked first
and replaces the workers one at a time, each new one serving before the old one stops taking connections.

granian's own SIGHUP respawns every worker unchecked (a typo in sluice.yaml then crash-loops the server) and stops
an old worker 3.5 s after starting its replacement, ready or not. Here a SIGHUP first runs `sluice check-config`
on the file in a child process (the supervisor stays small and imports no project code); a refusal is one error
line and the workers keep running. Otherwise each new worker must poll the listening socket (polled.py) before its
predecessor drains (drain.py: it stops accepting and closes each connection after its next response); once its
clients have left, or `server.shutdown_grace_seconds` ran out, it gets SIGTERM and finishes what is in flight.
The shared socket queues new connections for the new workers meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import wait as wait_for_processes
from typing import Any

from granian._granian import SocketHolder
from granian.server.mp import MPServer

from sluice.serve.drain import DRAIN_SIGNAL, load_app
from sluice.serve.polled import connections, polls
from sluice.serve.reloads import ReloadCounts, write_counts

logger = logging.getLogger("sluice.serve")

Worker = Any
"""granian's WorkerProcess (`inner` is its multiprocessing.Process); its methods carry no type hints."""

START_TIMEOUT = 120.0
"""How long a new worker may take to serve before the reload is given up and the old worker kept."""
CHECK_TIMEOUT = 120.0


@dataclass(frozen=True)
class Check:
    """What `sluice check-config` said of a file."""

    error: str | None
    shutdown_grace_seconds: float = 30.0


def check_config(path: str | None) -> Check:
    """`sluice check-config --json` on `path` in a child process: the same checks, imports included."""
    if path is None:  # the embedded defaults: nothing to re-read
        return Check(None)
    try:
        done = subprocess.run([sys.executable, "-m", "sluice", "check-config", "--json", "--config", path],
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Check(f"{path}: `sluice check-config` did not finish within {CHECK_TIMEOUT:.0f} s")
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return Check(f"{path}: `sluice check-config` failed (exit {done.returncode}): "
                     f"{lines[-1] if lines else 'no output'}")
    if not report.get("ok"):
        return Check(str(report.get("error")))
    return Check(None, float(report.get("shutdown_grace_seconds", 30.0)))


class SluiceServer(MPServer):
    """granian's multi-process server with Sluice's socket and reload."""

    def __init__(self, target: str, *, listener: socket.socket, config_path: str | None, counts_path: str | None,
                 shutdown_grace_seconds: float, **options: Any) -> None:
        self.listener = listener
        self.config_path = config_path
        self.counts_path = counts_path
        self.counts = ReloadCounts()
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self._shutting_down = False
        super().__init__(target, workers_kill_timeout=kill_timeout(shutdown_grace_seconds), **options)
        if counts_path is not None:
            write_counts(counts_path, self.counts)  # zeros, until the first reload
            self.on_shutdown(self._forget_counts)

    def _init_shared_socket(self) -> None:
        """The socket main() bound, for every worker (instead of one SO_REUSEPORT socket each on Linux)."""
        self._ssp = None
        self._shd = SocketHolder(self.listener.fileno(), False, self.backlog)  # type: ignore[assignment, call-arg]
        self._sfd = self.listener.fileno()  # type: ignore[assignment]
        self._sso = self.listener

    def serve(self, spawn_target: Callable[..., None] | None = None,
              target_loader: Callable[..., Any] | None = None, wrap_loader: bool = True) -> None:
        """Serve with workers that can drain (drain.py) at a reload."""
        loader = target_loader or partial(load_app, listener_inode=os.fstat(self.listener.fileno()).st_ino)
        super().serve(spawn_target, loader, wrap_loader)

    @property
    def stopping(self) -> bool:
        return self.interrupt_signal or self._shutting_down

    def shutdown(self, exit_code: int = 0) -> None:
        self._shutting_down = True  # a crash loop, too: the draining workers stop now, not after their grace
        for worker in self.wrks:  # drained first: streams still open as the grace ends get an error event
            pid = worker.inner.pid
            if pid and worker.inner.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, DRAIN_SIGNAL)
        super().shutdown(exit_code)  # type: ignore[no-untyped-call]

    def _reload(self, spawn_target: Callable[..., None], target_loader: Callable[..., Any]) -> None:
        self.reload_signal = False
        self.main_loop_interrupt.clear()
        where = self.config_path or "<embedded defaults>"
        logger.info("config reload asked for (SIGHUP): checking %s", where)
        check = check_config(self.config_path)
        if check.error is not None:
            self._record(False, f"config reload refused, the running configuration stays: {check.error}")
            return
        retiring, problem = self._replace_workers(spawn_target, target_loader)
        if problem is not None:
            kept = self.workers - len(retiring)
            self._record(False, f"config reload failed, {kept} of {self.workers} workers keep the running "
                                f"configuration: {problem}")
        else:
            self._record(True, f"config reloaded from {where}: {self.workers} new workers serve it")
        # Off the main loop, which meanwhile replaces a worker that crashes or takes the next reload. Not a daemon:
        # the supervisor's exit waits for the old workers.
        threading.Thread(target=self._retire, args=(retiring, self.shutdown_grace_seconds, self.workers_kill_timeout),
                         name="sluice-retire").start()
        if problem is None:
            self.shutdown_grace_seconds = check.shutdown_grace_seconds
            self.workers_kill_timeout = kill_timeout(check.shutdown_grace_seconds)

    def _replace_workers(self, spawn_target: Callable[..., None], target_loader: Callable[..., Any]
                         ) -> tuple[list[Worker], str | None]:
        """A new worker for each old one: the new one serving, the old one stops accepting and drains; stops at
        a failure (the remaining old workers keep serving)."""
        inode = os.fstat(self.listener.fileno()).st_ino
        retiring: list[Worker] = []
        for idx in range(self.workers):
            new: Worker = self._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader)
            new.interrupt_by_parent = True  # dying while it starts fails this reload: not a crash to respawn
            new.start()
            problem = self._wait(partial(polls, new.inner.pid or 0, inode), new, START_TIMEOUT)
            if problem is not None:
                new.kill()
                new.join()
                return retiring, f"the new worker-{idx + 1} {problem}"
            new.interrupt_by_parent = False
            old: Worker = self.wrks[idx]
            self.wrks[idx] = new
            old.interrupt_by_parent = True  # its exit is ours, not a crash to respawn
            logger.info("worker-%s (PID %s) serves the new configuration; the old one (PID %s) drains",
                        idx + 1, new.inner.pid, old.inner.pid)
            try:
                os.kill(old.inner.pid, DRAIN_SIGNAL)
            except ProcessLookupError:
                continue
            retiring.append(old)
            if self._wait(partial(_stopped_polling, old.inner.pid or 0, inode), None, 10.0) is not None:
                old.terminate()  # it did not drain: granian's own stop (which closes idle connections)
        self._metrics.incr_spawn(self.workers)
        return retiring, None

    def _wait(self, done: Callable[[], bool], starting: Worker | None, timeout: float) -> str | None:
        """Poll `done` every 20 ms; why it did not come true (the worker exited, time ran out, shutdown), or None."""
        deadline = time.monotonic() + timeout
        while not done():
            if starting is not None and not starting.is_alive():
                return f"exited while starting (exit code {starting.inner.exitcode}; its log lines say why)"
            if self.interrupt_signal:
                return "was interrupted by the server's shutdown"
            if time.monotonic() > deadline:
                return f"did not serve within {timeout:.0f} s"
            time.sleep(0.02)
        return None

    def _retire(self, retiring: list[Worker], grace: float, kill_after: int | None) -> None:
        """Stop each draining worker once its clients closed their connections (or its grace ran out): SIGTERM
        lets it finish what is still in flight, then it is killed past `kill_after` seconds."""
        grace_ends = time.monotonic() + grace
        waiting = list(retiring)
        while waiting:
            for old in list(waiting):
                if (connections(old.inner.pid or 0, self.bind_port) == 0 or self.stopping
                        or time.monotonic() > grace_ends):
                    old.terminate()
                    waiting.remove(old)
            time.sleep(0.05)
        deadline = time.monotonic() + (kill_after or 0)
        for old in retiring:
            if not wait_for_processes([old.inner.sentinel], max(deadline - time.monotonic(), 0.001)):
                logger.warning("killing worker PID %s: it did not stop within %s s", old.inner.pid, kill_after)
                old.kill()
            old.join()

    def _record(self, ok: bool, message: str) -> None:
        self.counts.record(ok, message)
        if ok:
            logger.info(message)
        else:
            logger.error(message)
        if self.counts_path is not None:
            try:
                write_counts(self.counts_path, self.counts)
            except OSError as exc:
                logger.warning("cannot write the reload counts to %s: %s", self.counts_path, exc.strerror)

    def _forget_counts(self) -> None:
        if self.counts_path is not None:
            try:
                os.unlink(self.counts_path)
            except OSError:
                pass


def _stopped_polling(pid: int, inode: int) -> bool:
    return not polls(pid, inode)


def kill_timeout(shutdown_grace_seconds: float) -> int:
    """How long a stopping worker may take: the gateway's grace for its requests, and a margin to close."""
    return int(shutdown_grace_seconds) + 5
