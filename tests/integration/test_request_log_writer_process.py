"""The request log's writer process: rows written outside the gateway, a killed or stalled writer, inline mode."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from sluice.db.engine import Database
from sluice.db.migrate import upgrade
from sluice.store import log_sender
from tests.conftest import DEV_KEY, run_gateway
from tests.request_log_support import make_exchange, recorder_config, seed

CONFIG = """
providers:
  mock: {type: mock}
models:
  - {name: mock, provider: mock, model: mock-1}
metrics: {require_key: false}
request_log: {flush_interval_seconds: 0.05, batch_size: 5, stdout: false}
"""


def writer_pids() -> list[int]:
    """This process's children that run the request log writer."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == os.getpid() and b"sluice.store.log_worker" in command:
            found.append(int(entry))
    return found


def rows(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "sluice.db") as db:
        return [row[0] for row in db.execute("SELECT request_body FROM request_logs")]


def wait_for(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def chat(client: httpx.Client, text: str) -> None:
    reply = client.post("/v1/chat/completions", json={"model": "mock", "messages": [{"role": "user", "content": text}]})
    assert reply.status_code == 200


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def client_for(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {DEV_KEY}"}, timeout=10)


def test_rows_are_written_by_an_idle_priority_child_process(tmp_path: Path) -> None:
    with run_gateway(CONFIG, data_dir=str(tmp_path)) as url, client_for(url) as client:
        [pid] = writer_pids()
        wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE)
        # A process group of its own (a signal to the gateway's group does not reach it), in the gateway's
        # session: where Linux schedules by session (autogroup), a session of its own competed with the gateway.
        wait_for(lambda: os.getpgid(pid) == pid)
        assert os.getsid(pid) == os.getsid(0)
        for index in range(12):
            chat(client, f"n{index}")
        wait_for(lambda: len(rows(tmp_path)) == 12)
        wait_for(lambda: metric(url, "sluice_request_log_written_total") == 12)  # reported every 0.1 s
    assert writer_pids() == []  # it exits with the gateway
    assert sorted(body for body in rows(tmp_path) if body) == sorted(
        f'{{"model":"mock","messages":[{{"role":"user","content":"n{index}"}}]}}' for index in range(12))


def test_the_writer_process_carries_neither_sqlalchemy_nor_pydantic(tmp_path: Path) -> None:
    """Each weighs ~20 MB in every worker's writer (docs/request-log.md, "What it costs")."""
    with run_gateway(CONFIG, data_dir=str(tmp_path)) as url, client_for(url) as client:
        chat(client, "light")
        wait_for(lambda: len(rows(tmp_path)) == 1)
        [pid] = writer_pids()
        assert "_pydantic_core" not in Path(f"/proc/{pid}/maps").read_text()
    code = ("import sys, sluice.store.log_worker; "
            "print(sorted({name.partition('.')[0] for name in sys.modules} & "
            "{'sqlalchemy', 'alembic', 'pydantic', 'pydantic_core', 'yaml', 'aiosqlite'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_killed_writer_is_replaced_and_what_it_held_is_counted_as_lost(tmp_path: Path) -> None:
    config = CONFIG.replace("stdout: false", "stdout: false, writer_priority: 10")
    with run_gateway(config, data_dir=str(tmp_path)) as url, client_for(url) as client:
        chat(client, "before")
        wait_for(lambda: metric(url, "sluice_request_log_written_total") == 1)  # the writer reported it
        [pid] = writer_pids()
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0) + 10
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        os.kill(pid, signal.SIGSTOP)
        for index in range(3):
            chat(client, f"lost {index}")  # they reach the pipe, which the stopped writer does not read
        time.sleep(0.3)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(writer_pids()) == 1 and writer_pids() != [pid])
        chat(client, "after")
        wait_for(lambda: len(rows(tmp_path)) == 2)
        assert metric(url, "sluice_request_log_dropped_total") == 3
    assert all("lost" not in body for body in rows(tmp_path))


def test_a_stalled_writer_makes_the_gateway_spill_and_nothing_is_lost(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the writer stopped, the kernel pipe (1 MiB), asyncio's buffer and the packed buffer (64 KiB each here)
    fill up; past `buffer_size` queued exchanges the gateway spills them; the writer, resumed, replays them: each
    row once."""
    monkeypatch.setattr(log_sender, "MAX_PENDING_BYTES", 64 * 1024)
    monkeypatch.setattr(log_sender, "MAX_PACKED_BYTES", 64 * 1024)
    config = CONFIG.replace("batch_size: 5", "batch_size: 5, buffer_size: 4")
    big = "x" * 100_000
    with run_gateway(config, data_dir=str(tmp_path)) as url, client_for(url) as client:
        [pid] = writer_pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            for index in range(30):
                chat(client, f"{index} {big}")
            wait_for(lambda: metric(url, "sluice_request_log_spilled_total") > 0)
        finally:
            os.kill(pid, signal.SIGCONT)
        chat(client, "last")  # a successful insert is what starts a replay
        wait_for(lambda: len(rows(tmp_path)) == 31, within=20)
        wait_for(lambda: metric(url, "sluice_request_log_replayed_total") ==
                 metric(url, "sluice_request_log_spilled_total"))
        assert metric(url, "sluice_request_log_dropped_total") == 0
    assert len(set(rows(tmp_path))) == 31


def test_the_writer_process_deletes_entries_past_retention(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = [make_exchange(index, started_at=(now - timedelta(days=40, minutes=index)).timestamp()) for index in range(7)]
    recent = [make_exchange(index, started_at=(now - timedelta(days=2)).timestamp()) for index in range(7, 10)]

    async def seeded() -> None:
        db = Database(f"sqlite:///{tmp_path}/sluice.db")
        await upgrade(db)
        await seed(db, old + recent)
        await db.aclose()
    asyncio.run(seeded())
    config = CONFIG.replace("stdout: false}", "stdout: false, retention_days: 30, prune_interval_seconds: 0.2}")
    with run_gateway(config, data_dir=str(tmp_path)) as url, client_for(url) as client:
        chat(client, "new")
        wait_for(lambda: len(rows(tmp_path)) == 4)
        assert writer_pids()
    assert sorted(orjson.loads(body)["messages"][0]["content"] for body in rows(tmp_path)) == sorted(
        [orjson.loads(exchange.request_body)["messages"][0]["content"] for exchange in recent] + ["new"])


def test_the_inline_writer_needs_no_process(tmp_path: Path) -> None:
    config = CONFIG.replace("stdout: false", "stdout: false, writer: inline")
    with run_gateway(config, data_dir=str(tmp_path)) as url, client_for(url) as client:
        assert writer_pids() == []
        chat(client, "inline")
        wait_for(lambda: len(rows(tmp_path)) == 1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the server thread's exit
def test_an_unusable_database_stops_the_gateway_start_and_leaves_no_writer(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sluice.db").mkdir()  # SQLite cannot open a directory
    with pytest.raises(RuntimeError, match="did not start"):
        with run_gateway(CONFIG, data_dir=str(tmp_path)):
            pass
    assert "unable to open database file" in capfd.readouterr().err
    assert writer_pids() == []


@pytest.mark.anyio
async def test_exchanges_a_writer_never_took_are_spilled_at_shutdown(tmp_path: Path) -> None:
    """No writer running (it could not be started): shutdown spills what was packed for it, whole."""
    config = recorder_config()
    spill = tmp_path / "spill.jsonl"
    sender = log_sender.LogSender(config, log_sender.worker_settings(config, "sqlite://", spill, False, None, "json"))
    exchanges = [make_exchange(index, stream=index % 2 == 0) for index in range(3)]
    for exchange in exchanges:
        sender.observe(exchange)
    await sender.aclose()
    spilled = [orjson.loads(line) for line in spill.read_bytes().splitlines()]
    assert [row["request_id"] for row in spilled] == [exchange.request_id for exchange in exchanges]
    assert sender.stats.spilled == 3 and sender.stats.dropped == 0
