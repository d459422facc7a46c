"""`sluice db upgrade|current` and `sluice logs export|prune` against a real SQLite file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from sluice.cli import main
from sluice.db.engine import Database
from sluice.db.migrate import head_revision
from tests.request_log_support import count_rows, make_exchange, seed


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("SLUICE_DATABASE_URL", url)
    monkeypatch.delenv("SLUICE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return url


def _seed(url: str, ages_in_days: list[float]) -> None:
    async def run() -> None:
        db = Database(url)
        now = time.time()
        await seed(db, [make_exchange(index, started_at=now - age * 86400) for index, age in enumerate(ages_in_days)])
        await db.aclose()

    asyncio.run(run())


def _rows(url: str) -> int:
    async def run() -> int:
        db = Database(url)
        try:
            return await count_rows(db)
        finally:
            await db.aclose()

    return asyncio.run(run())


def test_upgrade_export_and_prune(database: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current"]) == 0
    assert "current: None" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    assert main(["db", "current"]) == 0
    assert f"current: {head_revision()}" in capsys.readouterr().out

    _seed(database, [0.01, 0.5, 3, 45, 60])
    capsys.readouterr()
    assert main(["logs", "export", "--since", "7d"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["request_id"] for line in lines] == ["req-00002", "req-00001", "req-00000"]
    assert lines[0]["request"]["body"]["model"] == "mock"
    assert main(["logs", "export", "--since", "2000-01-01", "--no-bodies"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5 and "body" not in lines[0]["request"]

    assert main(["logs", "prune"]) == 0  # the default retention: 30 days
    assert "deleted 2 entries older than 30 days" in capsys.readouterr().err
    assert main(["logs", "prune", "--days", "1"]) == 0
    assert _rows(database) == 2


def test_bad_times_and_databases_are_reported(database: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        main(["logs", "export", "--since", "last tuesday"])
    assert "not a time" in capsys.readouterr().err
    monkeypatch.setenv("SLUICE_DATABASE_URL", "mysql://nowhere/db")
    assert main(["db", "upgrade"]) == 2
    assert "unsupported database" in capsys.readouterr().err
