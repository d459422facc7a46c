"""Records, ids, timestamps and lines: the fast paths say exactly what the slow, obvious ones say."""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter

from sluice.db.tables import COLUMNS
from sluice.pricing import Price, PriceTable
from sluice.store.lines import console_lines, spill_lines, spilled_record, stdout_lines
from sluice.store.options import RedactionConfig
from sluice.store.records import RecordBuilder, document, record_of, row_of
from sluice.store.redaction import Redactor
from sluice.store.stamps import iso_of, iso_utc, log_ids, sqlite_text
from tests.request_log_support import make_exchange, recorder_config


def _lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def _odd_exchanges() -> list[object]:
    """Exchanges whose values a hand-made JSON line could get wrong."""
    plain, streamed, failed = make_exchange(1), make_exchange(2, stream=True), make_exchange(3, status=502)
    failed.error = 'upstream said "no"\n\tand \\ left: ünïcödé ✓'
    failed.response_body = None
    failed.trace_id, failed.project, failed.client_disconnected = None, 'proj "x"', True
    odd = make_exchange(4)
    odd.request_id, odd.model, odd.endpoint = 'r,"1"', "m\u2028o,d\"el", "/v1/chat/completions?x=\"1\""
    odd.key_id = None
    odd.request_headers = [(b"content-type", b'text/"plain"'), (b"X-Tag", b"a,b"), (b"x-tag", b"c")]
    odd.latency_upstream = None
    return [plain, streamed, failed, odd]


@pytest.mark.parametrize("config", [{}, {"prices": {"mock": Price(input_per_million=0.15, output_per_million=0.6)}},
                                    {"store_bodies": False}, {"redaction": {"pii": ["email"]}}])
def test_stdout_lines_are_the_documents_of_the_rows(config: dict[str, Any]) -> None:
    config = dict(config)
    prices = config.pop("prices", None)
    builder = RecordBuilder(recorder_config(**config), None if prices is None else PriceTable(prices))
    records = [builder.record(exchange) for exchange in _odd_exchanges()]  # type: ignore[arg-type]
    rows = [row_of(record) for record in records]
    for bodies in (False, True):
        assert _lines(stdout_lines(records, bodies=bodies)) == [document(row, bodies=bodies) for row in rows]


def test_spill_lines_round_trip_and_older_files_still_replay() -> None:
    builder = RecordBuilder(recorder_config())
    records = [builder.record(exchange) for exchange in _odd_exchanges()]  # type: ignore[arg-type]
    back = [spilled_record(line) for line in spill_lines(records).splitlines()]
    assert [row_of(record) for record in back] == [row_of(record) for record in records]
    row = row_of(records[0])  # the shape the previous writer spilled: decoded bodies, isoformat() timestamps
    row["timestamp"] = datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    old = orjson.dumps(row, default=str)
    assert row_of(spilled_record(old)) == row
    with pytest.raises(ValueError):
        spilled_record(b'{"id": "torn", "timest')
    with pytest.raises(ValueError):
        spilled_record(b"[1, 2]")


def test_records_are_rows_and_back() -> None:
    builder = RecordBuilder(recorder_config())
    for exchange in _odd_exchanges():
        record = builder.record(exchange)  # type: ignore[arg-type]
        assert len(record) == len(COLUMNS)
        assert record_of(row_of(record)) == record


def test_headers_match_the_redactor() -> None:
    exchange = make_exchange(1)
    exchange.request_headers = [(b"Authorization", b"Bearer sk-1"), (b"X-Tag", b"one"), (b"x-tag", b"mail a@b.io"),
                                (b"cookie", b"s=1"), (b"x-internal", b"t"), (b"Content-Type", b"application/json")]
    for redaction in ({}, {"headers": ["X-Internal"], "pii": ["email"]}):
        config = recorder_config(redaction=redaction)
        row = RecordBuilder(config).build(exchange)
        assert row["request_headers"] == Redactor(TypeAdapter(RedactionConfig).validate_python(redaction)).headers(
            exchange.request_headers)


def test_timestamps_agree_with_datetime() -> None:
    rand = random.Random(7)
    for _ in range(20_000):
        stamp = rand.uniform(0, 4e9)
        iso = iso_utc(stamp)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", iso)
        exact = datetime.fromtimestamp(stamp, UTC)
        assert abs(datetime.fromisoformat(iso) - exact) <= timedelta(microseconds=1)
    assert iso_utc(1741083300.0) == "2025-03-04T10:15:00.000000+00:00"
    assert sqlite_text(iso_utc(1741083300.25)) == "2025-03-04 10:15:00.250000"  # SQLAlchemy's SQLite DATETIME text
    assert iso_of(datetime(2025, 3, 4, 11, 15, tzinfo=UTC).astimezone()) == "2025-03-04T11:15:00.000000+00:00"
    assert iso_of("2025-03-04T10:15:00Z") == iso_of(datetime(2025, 3, 4, 10, 15)) == iso_of(1741083300.0)


def test_log_ids_are_unique_time_ordered_uuids() -> None:
    first, second = log_ids(500), log_ids(500)
    assert len(set(first + second)) == 1000 and first == sorted(first) and second == sorted(second)
    assert first[0][:13] <= second[0][:13]  # milliseconds first: ordered by time, batches within a ms by chance
    parsed = uuid.UUID(first[0])
    assert str(parsed) == first[0] and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert abs(int(first[0][:8] + first[0][9:13], 16) / 1000 - datetime.now(UTC).timestamp()) < 60
    assert log_ids(0) == []


def test_a_bad_start_time_is_refused() -> None:
    exchange = make_exchange(1)
    exchange.started_at = float("nan")
    with pytest.raises(ValueError, match="not a Unix time"):
        RecordBuilder(recorder_config()).record(exchange)


def test_console_lines_are_one_readable_line_per_exchange_without_secrets() -> None:
    builder = RecordBuilder(recorder_config())
    exchanges = [make_exchange(1), make_exchange(2, status=502)]
    text = console_lines([builder.record(exchange, f"log-{i}") for i, exchange in enumerate(exchanges)]).decode()
    lines = text.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\S+ POST /v1/chat/completions status=200 ms=12\.0 model=mock provider=mock key=key-test "
                        r"request_id=req-00001 trace_id=0+1", lines[0]), lines[0]
    assert " status=502 " in lines[1] and "Bearer" not in text and "session=secret" not in text
