"""The spill file: an append-only JSONL of log rows the database could not take in time, replayed later."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import orjson

from sluice.store.lines import spill_lines, spilled_record
from sluice.store.records import Record

logger = logging.getLogger("sluice.request_log")


class SpillFile:
    """Appends go to `path`; a replay first renames it to a unique `<path>.replay-…` so appends never mix in.

    Several worker processes may share one path: appends and renames hold an exclusive `flock` on `<path>.lock`,
    and a replay holds one on the file it replays, so two processes never replay the same file at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock = asyncio.Lock()
        self.unreadable_lines = 0

    async def append(self, records: Sequence[Record]) -> None:
        """Append `records` (one JSON line each) and fsync; raises OSError when the disk refuses."""
        data = spill_lines(records)
        async with self._lock:
            await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._process_lock():
            with open(self.path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())

    async def take(self) -> list[Path]:
        """The files to replay: the current spill file (renamed aside) and any left by an earlier run."""
        async with self._lock:
            return await asyncio.to_thread(self._take)

    def _take(self) -> list[Path]:
        if not self.path.parent.is_dir():
            return []
        with self._process_lock():
            if self.path.exists() and self.path.stat().st_size > 0:
                self.path.rename(self.path.with_name(f"{self.path.name}.replay-{uuid.uuid4().hex}"))
        return sorted(self.path.parent.glob(self.path.name + ".replay-*"))

    def has_data(self) -> bool:
        """Whether anything waits on disk (the spill file or a replay file)."""
        if self.path.exists() and self.path.stat().st_size > 0:
            return True
        return self.path.parent.is_dir() and any(self.path.parent.glob(self.path.name + ".replay-*"))

    async def replay(self, path: Path, batch_size: int, insert: Callable[[list[Record]], Awaitable[bool]]
                     ) -> int | None:
        """Feed the rows of `path` to `insert` in batches and remove the file once all went in.

        Returns how many rows were fed, or None when `insert` failed (the file stays for the next try) or another
        process is replaying it. Rows fed twice are harmless: the database skips log ids it already has.
        """
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            return 0
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            replayed = 0
            while lines := await asyncio.to_thread(lambda: list(itertools.islice(handle, batch_size))):
                rows = list(self._parse(lines))
                if rows and not await insert(rows):
                    return None
                replayed += len(rows)
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return replayed

    def _parse(self, lines: list[bytes]) -> Iterator[Record]:
        for line in lines:
            try:
                yield spilled_record(line)
            except (orjson.JSONDecodeError, ValueError, TypeError):
                self.unreadable_lines += 1
                logger.error("request log: dropped an unreadable line of the spill file (%d bytes)", len(line))

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[None]:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
