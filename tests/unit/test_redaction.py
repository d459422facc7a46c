"""Redaction rules: secret headers always go; PII scrubbing is opt-in and leaves look-alikes alone."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from sluice.store.options import RedactionConfig
from sluice.store.redaction import Redactor, iban_valid, luhn_valid


def _redactor(**config: object) -> Redactor:
    return Redactor(TypeAdapter(RedactionConfig).validate_python(config))


def test_secret_headers_are_always_removed() -> None:
    headers = [(b"Authorization", b"Bearer sk-1"), (b"x-api-key", b"sk-2"), (b"api-key", b"sk-3"),
               (b"cookie", b"a=b"), (b"proxy-authorization", b"Basic x"), (b"x-custom-secret", b"s"),
               (b"content-type", b"application/json"), (b"x-tag", b"one"), (b"x-tag", b"two")]
    kept = _redactor(headers=["X-Custom-Secret"]).headers(headers)
    assert {name: value for name, value in kept.items() if value != "[REDACTED]"} == {
        "content-type": "application/json", "x-tag": "one, two"}
    assert sorted(name for name, value in kept.items() if value == "[REDACTED]") == [
        "api-key", "authorization", "cookie", "proxy-authorization", "x-api-key", "x-custom-secret"]


def test_nothing_is_scrubbed_unless_asked() -> None:
    body = {"messages": [{"content": "mail bob@example.com from 10.0.0.1"}]}
    assert _redactor().body(body) == body


@pytest.mark.parametrize(("kind", "text", "expected"), [
    ("email", "write to jane.doe+x@mail.example.org today", "write to [EMAIL] today"),
    ("phone", "call +1 (415) 555-0100 or 030 1234 5678", "call [PHONE] or [PHONE]"),
    ("phone", "on 2024-05-01 we had 12345678 tokens and 3.14159", "on 2024-05-01 we had 12345678 tokens and 3.14159"),
    ("card", "card 4111 1111 1111 1111 exp", "card [CARD] exp"),
    ("card", "order 4111 1111 1111 1112 is not a card", "order 4111 1111 1111 1112 is not a card"),
    ("iban", "pay DE89 3704 0044 0532 0130 00 now", "pay [IBAN] now"),
    ("iban", "ref GB00XXXX12345678901234", "ref GB00XXXX12345678901234"),
    ("ip", "from 192.168.1.20 and 2001:db8::8a2e:370:7334", "from [IP] and [IP]"),
    ("ip", "version 1.2.3 at 12:30:45", "version 1.2.3 at 12:30:45"),
])
def test_pii_kinds(kind: str, text: str, expected: str) -> None:
    assert _redactor(pii=[kind]).text(text) == expected


def test_every_kind_together_and_custom_patterns() -> None:
    redactor = _redactor(pii=["email", "phone", "card", "iban", "ip"],
                         patterns=[{"pattern": r"ACME-\d+", "replacement": "[ACCOUNT]"}, {"pattern": "secret"}])
    text = "ACME-991 secret: a@b.io 4242424242424242 +44 20 7946 0958 10.1.2.3 NL91ABNA0417164300"
    assert redactor.text(text) == "[ACCOUNT] [REDACTED]: [EMAIL] [CARD] [PHONE] [IP] [IBAN]"


def test_bodies_are_walked_and_keys_kept() -> None:
    body = {"bob@example.com": ["x@y.io", 3, None, {"nested": "tel +33 1 23 45 67 89"}]}
    assert _redactor(pii=["email", "phone"]).body(body) == {"bob@example.com": ["[EMAIL]", 3, None,
                                                                                 {"nested": "tel [PHONE]"}]}


def test_metadata_only_by_key_or_project() -> None:
    redactor = _redactor(metadata_only_keys=["key-abc"], metadata_only_projects=["hr"])
    assert redactor.metadata_only("key-abc", None) and redactor.metadata_only("key-x", "hr")
    assert not redactor.metadata_only("key-x", "sales") and not redactor.metadata_only(None, None)


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")
