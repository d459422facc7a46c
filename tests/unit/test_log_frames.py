"""What the request log's writer process is sent: no credential, only that it was presented, and the key's hash."""

from __future__ import annotations

from sluice.keys.credentials import presented_in
from sluice.serve.frame_pipe import FrameDecoder
from sluice.store.log_sender import packed, unpacked
from sluice.store.records import RecordBuilder
from sluice.store.redaction import redacted_headers, secret_headers
from tests.request_log_support import KEY, KEY_HASH, make_exchange, recorder_config


def test_the_writer_is_sent_no_credential() -> None:
    config = recorder_config(redaction={"headers": ["X-Internal-Token"]})
    secret = frozenset(name.encode() for name in secret_headers(config.redaction))
    exchange = make_exchange(1)  # Authorization: Bearer KEY and a cookie
    exchange.request_headers = [*exchange.request_headers, (b"x-api-key", KEY.encode()),
                                (b"X-Internal-Token", b"tok-123"), (b"x-tag", b"kept")]
    frame = packed(exchange, secret)
    assert KEY.encode() not in frame and b"tok-123" not in frame and b"session=secret" not in frame
    [values] = list(FrameDecoder().feed(frame))
    received = unpacked(values)
    assert received.key_hash == KEY_HASH and received.key_id == "key-test"
    assert dict(received.request_headers) == {b"authorization": b"[REDACTED]", b"content-type": b"application/json",
                                              b"cookie": b"[REDACTED]", b"x-api-key": b"[REDACTED]",
                                              b"X-Internal-Token": b"[REDACTED]", b"x-tag": b"kept"}
    row = RecordBuilder(config).build(received)  # type: ignore[arg-type]
    assert row["key_hash"] == KEY_HASH
    assert row["request_headers"] == {"authorization": "[REDACTED]", "content-type": "application/json",
                                      "cookie": "[REDACTED]", "x-api-key": "[REDACTED]",
                                      "x-internal-token": "[REDACTED]", "x-tag": "kept"}


def test_headers_without_secrets_are_passed_as_they_are() -> None:
    headers = [(b"content-type", b"application/json"), (b"x-tag", b"a")]
    assert redacted_headers(headers, frozenset({b"authorization"})) is headers


def test_the_key_a_request_presents() -> None:
    assert presented_in({b"authorization": b"Bearer  sk-1 "}) == "sk-1"
    assert presented_in({b"authorization": b"bearer sk-1"}) == "sk-1"
    assert presented_in({b"x-api-key": b"sk-2", b"authorization": b"Bearer sk-1"}) == "sk-2"
    assert presented_in({b"authorization": b"Basic dXNlcjpwdw=="}) is None
    assert presented_in({b"content-type": b"application/json"}) is None
    assert presented_in({b"x-api-key": b""}) is None
