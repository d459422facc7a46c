"""The `request_logs` columns by name and kind, without SQLAlchemy: what the writer process needs of the table.

`tables.py` defines the table itself and checks at import that its columns are these, in this order."""

from __future__ import annotations

COLUMNS = ("id", "timestamp", "request_id", "trace_id", "key_id", "key_hash", "project", "endpoint", "method",
           "operation", "stream", "status", "provider", "model", "upstream_model", "request_headers", "request_body",
           "response_body", "response_text", "latency_total_ms", "latency_upstream_ms", "time_to_first_token_ms",
           "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "error", "client_disconnected",
           "bodies_withheld", "cache", "routing")
"""A record's fields, in the order the record builder fills them and every insert names them."""

JSON_COLUMNS = ("request_headers", "request_body", "response_body", "routing")
TIMESTAMP_COLUMNS = ("timestamp",)
BOOLEAN_COLUMNS = ("stream", "client_disconnected", "bodies_withheld")
INTEGER_COLUMNS = ("status", "prompt_tokens", "completion_tokens", "total_tokens")
FLOAT_COLUMNS = ("latency_total_ms", "latency_upstream_ms", "time_to_first_token_ms", "cost_usd")
KINDS: dict[str, str] = {name: "text" for name in COLUMNS} | {
    name: kind for kind, names in (("json", JSON_COLUMNS), ("timestamp", TIMESTAMP_COLUMNS),
                                   ("boolean", BOOLEAN_COLUMNS), ("integer", INTEGER_COLUMNS),
                                   ("float", FLOAT_COLUMNS)) for name in names}
"""Each column's kind: json, timestamp, boolean, integer, float or text."""
