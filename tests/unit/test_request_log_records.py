"""Exchange → log row: stream assembly, usage, key hash, cost, redaction and metadata-only, size limits."""

from __future__ import annotations

import orjson
import pytest

from sluice.config import ConfigError, parse_config
from sluice.pricing import Price, PriceTable
from sluice.providers.mock import chat_chunks, completion_chunks
from sluice.store.records import RecordBuilder, document
from sluice.stream_reader import assemble_stream, reply_text, sse_events
from tests.request_log_support import KEY_HASH, chat_body, make_exchange, recorder_config


def _wire(chunks: list[dict[str, object]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks) + b"data: [DONE]\r\n\r\n"


@pytest.mark.parametrize("piece", [1, 3, 64, 100_000])
def test_streams_are_assembled_whatever_the_chunk_boundaries(piece: int) -> None:
    wire = _wire(chat_chunks(chat_body("one two three four five"), 3, include_usage=True))
    events = sse_events([wire[start:start + piece] for start in range(0, len(wire), piece)])
    body, text, usage = assemble_stream(events)
    assert text == "one two three four five"
    assert usage == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert body is not None and body["choices"][0]["finish_reason"] == "stop"
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-mock-")


def test_tool_call_arguments_are_assembled() -> None:
    request = {**chat_body("weather in Paris"), "tools": [{"type": "function", "function": {"name": "lookup"}}],
               "tool_choice": "required"}
    body, text, _ = assemble_stream(sse_events([_wire(chat_chunks(request, 4, include_usage=False))]))
    assert body is not None
    [call] = body["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "lookup", "arguments": '{"input":"weather in Paris"}'}
    assert text == '{"input":"weather in Paris"}' and body["choices"][0]["finish_reason"] == "tool_calls"


def test_completion_streams_and_noise() -> None:
    wire = _wire(completion_chunks({"model": "m", "prompt": "say this"}, 2, include_usage=True))
    body, text, usage = assemble_stream(sse_events([b": keep-alive\n\n", wire, b"data: {broken\n\n"]))
    assert text == "say this" and usage is not None and body is not None
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "say this"
    assert assemble_stream([]) == (None, None, None)


def test_reply_text_of_plain_replies() -> None:
    assert reply_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    assert reply_text({"choices": [{"text": "t"}]}) == "t"
    assert reply_text({"data": [{"embedding": [0.1]}]}) is None


def test_row_fields() -> None:
    prices = PriceTable({"mock": Price(input_per_million=2.5, output_per_million=10)})
    row = RecordBuilder(recorder_config(), prices).build(make_exchange(1, text="alpha beta gamma"))
    assert row["key_hash"] == KEY_HASH and row["key_id"] == "key-test"
    assert row["request_headers"] == {"authorization": "[REDACTED]", "content-type": "application/json",
                                      "cookie": "[REDACTED]"}
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (3, 3, 6)
    assert row["cost_usd"] == pytest.approx((3 * 2.5 + 3 * 10) / 1e6)
    assert row["response_text"] == "alpha beta gamma" and row["latency_total_ms"] == 12.0
    assert row["timestamp"].tzinfo is not None and len(row["id"]) == 36
    summary = document(row, bodies=False)
    assert summary["provider"] == {"name": "mock", "model_requested": "mock", "model_resolved": "mock-1"}
    assert "body" not in summary["request"] and summary["usage"]["total_tokens"] == 6


def test_no_price_no_cost_and_unpriced_usage() -> None:
    assert RecordBuilder(recorder_config()).build(make_exchange(1))["cost_usd"] is None
    assert RecordBuilder(recorder_config(), PriceTable()).build(make_exchange(1))["cost_usd"] is None


@pytest.mark.parametrize("config", [{"store_bodies": False}, {"redaction": {"metadata_only_keys": ["key-test"]}},
                                    {"redaction": {"metadata_only_projects": ["hr"]}}])
def test_metadata_only(config: dict[str, object]) -> None:
    row = RecordBuilder(recorder_config(**config)).build(make_exchange(1, stream=True, project="hr"))
    assert row["request_body"] is None and row["response_body"] is None and row["response_text"] is None
    assert row["bodies_withheld"] is True and row["total_tokens"] == 6


def test_pii_is_scrubbed_from_bodies_text_and_errors() -> None:
    exchange = make_exchange(1, stream=True, text="mail me at ann@example.com", status=500)
    exchange.error = "upstream echoed ann@example.com"
    row = RecordBuilder(recorder_config(redaction={"pii": ["email"]})).build(exchange)
    assert "ann@example.com" not in orjson.dumps(row, default=str).decode()
    assert row["response_text"] == "mail me at [EMAIL]" and row["error"] == "upstream echoed [EMAIL]"


def test_oversized_nul_and_non_json_bodies() -> None:
    exchange = make_exchange(1)
    exchange.request_body = b'{"model": "a\\u0000b"}'
    exchange.response_body = b"x" * 100
    exchange.model = "m" * 1000
    row = RecordBuilder(recorder_config(max_body_bytes=10)).build(exchange)
    assert row["request_body"].startswith('{"model": ') and "truncated, 21 bytes" in row["request_body"]
    assert row["response_body"] == "x" * 10 + "… [truncated, 100 bytes]"
    assert len(row["model"]) == 256
    row = RecordBuilder(recorder_config()).build(exchange)
    assert row["request_body"] == {"model": "a\ufffdb"}


def test_request_log_config_is_strict_and_names_the_key() -> None:
    base = "providers:\n  m: {type: mock}\n"
    config = parse_config(base + "request_log: {batch_size: 5, stdout: false, redaction: {pii: [email]}}\n", "t")
    assert config.request_log.batch_size == 5 and config.request_log.redaction.pii == ["email"]
    with pytest.raises(ConfigError, match=r"request_log.batchsize: Unexpected keyword argument"):
        parse_config(base + "request_log: {batchsize: 5}\n", "t")
    with pytest.raises(ConfigError, match=r"request_log.redaction.pii\[0\]"):
        parse_config(base + "request_log: {redaction: {pii: [ssn]}}\n", "t")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        parse_config(base + "request_log: {redaction: {patterns: [{pattern: '(unclosed'}]}}\n", "t")


def test_the_writer_priority_is_idle_or_a_nice_value() -> None:
    base = "providers:\n  m: {type: mock}\n"
    assert parse_config(base, "t").request_log.writer_priority == "idle"
    assert parse_config(base + "request_log: {writer_priority: 5}\n", "t").request_log.writer_priority == 5
    for wrong in ("25", "high", "-1"):
        with pytest.raises(ConfigError, match=r"request_log.writer_priority"):
            parse_config(base + f"request_log: {{writer_priority: {wrong}}}\n", "t")
