"""A helper process fed through its stdin: one JSON settings line, then length-prefixed `marshal` frames; EOF stops it.

The span exporter (`telemetry/span_worker.py`) and the request log writer (`store/log_worker.py`) run this way:
the gateway packs what it hands over as a few µs of `marshal` and writes it without ever blocking; the decoding,
building and I/O run in the helper, outside the gateway's GIL and at a lower CPU priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import marshal
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

logger = logging.getLogger("sluice.serve.frame_pipe")

HEADER_BYTES = 4
PIPE_BYTES = 1024 * 1024
"""The kernel pipe's size (Linux's default is 64 KiB): ~1,000 exchanges wait there before asyncio buffers them."""


def lower_priority(priority: str | int) -> None:
    """In a helper: SCHED_IDLE for `idle`, else this `nice` increment; call it before the helper starts threads
    (they inherit it). Where a sandbox refuses SCHED_IDLE, the lowest `nice` priority instead."""
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority:
            os.nice(int(priority))
    except OSError as exc:
        logger.warning("%s cannot lower its priority to %s (%s); using nice 19", sys.argv[0], priority, exc)
        with contextlib.suppress(OSError):
            os.nice(19)


def detach() -> None:
    """In a helper, first thing: leave the gateway's process group, so that Ctrl-C or a signal to that group
    (`docker stop`, a supervisor's `killpg`) does not kill the helper before it wrote what it holds; it stops at
    EOF, when its worker ends.

    Not a session of its own (`setsid`), as until 2026-11-26: where Linux schedules by session (autogroup, on by
    default outside systemd's CPU cgroups), a new session is a scheduling group that competes with the gateway's
    as an equal, so the helper's SCHED_IDLE applied only inside its own group and a busy helper took the worker's
    core as often as the worker did (docs/benchmarks.md, "Helpers in the gateway's scheduling group"). (uvloop's
    subprocess API has no `process_group`, hence the helper's own `setpgid`.)"""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def frame(value: Any) -> bytes:
    """`value` (plain values only) as one frame: its 4-byte big-endian length, then its `marshal` bytes."""
    payload = marshal.dumps(value)
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def read_frames(stream: BinaryIO) -> Iterator[Any]:
    """Yield the values of the frames on a blocking stream until EOF (or a torn last frame)."""
    while True:
        header = stream.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES:
            return
        size = int.from_bytes(header, "big")
        payload = stream.read(size)
        if len(payload) < size:
            return
        yield marshal.loads(payload)


class FrameDecoder:
    """Frames out of bytes read in chunks of any size (for an asyncio reader)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The values of the frames `data` completes; a partial frame waits for the next call."""
        buffer = self._buffer
        buffer += data
        values = []
        start = 0
        while len(buffer) - start >= HEADER_BYTES:
            end = start + HEADER_BYTES + int.from_bytes(buffer[start:start + HEADER_BYTES], "big")
            if end > len(buffer):
                break
            values.append(marshal.loads(buffer[start + HEADER_BYTES:end]))
            start = end
        del buffer[:start]
        return values


class FramePipe:
    """The gateway's end: starts `python -m <module>`, writes frames without blocking, and closes with EOF."""

    def __init__(self, module: str, settings: dict[str, Any], max_pending_bytes: int,
                 pass_fds: Sequence[int] = (), quiet: bool = True) -> None:
        self.module = module
        self.settings = settings
        self.max_pending_bytes = max_pending_bytes
        self.pass_fds = tuple(pass_fds)
        self.quiet = quiet
        """Send the helper's stdout to /dev/null (the span exporter); else it shares the gateway's stdout."""
        self._process: asyncio.subprocess.Process | None = None
        self._pipe: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        # The helper moves to a process group of its own (`detach`), but stays in the gateway's session.
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL if self.quiet else None, pass_fds=self.pass_fds)
        self._pipe = self._process.stdin
        assert self._pipe is not None
        pipe = self._pipe.get_extra_info("pipe")
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._pipe.write(json.dumps(self.settings).encode() + b"\n")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        """The helper's exit status once it exited; None while it runs (or before it started)."""
        return self._process.returncode if self._process is not None else None

    @property
    def open(self) -> bool:
        return self._pipe is not None and not self._pipe.is_closing() and self.returncode is None

    @property
    def room(self) -> int:
        """Bytes that may still be written before `max_pending_bytes` wait in the gateway (0 if the pipe is shut)."""
        if not self.open:
            return 0
        assert self._pipe is not None
        return max(0, self.max_pending_bytes - self._pipe.transport.get_write_buffer_size())

    def write(self, frames: bytes | bytearray) -> None:
        """Queue `frames` (whole frames only); asyncio writes them as the helper reads."""
        if self._pipe is not None and not self._pipe.is_closing():
            self._pipe.write(frames)

    async def aclose(self, stop_seconds: float) -> bool:
        """Send EOF and wait for the helper to finish; kill it after `stop_seconds`. False if it had to be killed."""
        process, pipe = self._process, self._pipe
        self._pipe = None
        if process is None or pipe is None:
            return True
        try:
            pipe.close()  # asyncio still writes what it buffered, then the helper reads EOF
            await asyncio.wait_for(process.wait(), stop_seconds)
            return True
        except TimeoutError:
            logger.warning("%s did not finish in %.0f s; stopping it", self.module, stop_seconds)
            process.kill()
            await process.wait()
            return False
