"""Path and query checks for provider passthrough: nothing a caller sends may steer the URL off the base URL.

The checks run on the raw (still percent-encoded) request target, the bytes that are forwarded, and look at
each segment fully decoded too, so `%2e%2e`, `%252e%252e` and `%2f` are caught like `..` and `/`.
"""

from __future__ import annotations

import re
from typing import NoReturn
from urllib.parse import unquote

from sluice.errors import InvalidRequest

_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
"""RFC 3986 path characters (pchar and "/"), with well-formed percent escapes only."""
_QUERY = re.compile(r"[!-\"$-~]*")
"""Visible ASCII except `#`: anything else could split or corrupt the request line."""
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_MAX_DECODES = 4


def safe_suffix(suffix: str) -> str:
    """`suffix` (empty, or starting with "/") unchanged if it is safe to append to a base URL; else InvalidRequest."""
    if not _PATH.fullmatch(suffix):
        _refuse("it contains characters that are not allowed in a URL path (backslashes, spaces, bad % escapes)")
    if not suffix:
        return suffix
    segments = suffix[1:].split("/")
    for index, segment in enumerate(segments):
        _check_segment(segment, first=index == 0, last=index == len(segments) - 1)
    return suffix


def _check_segment(segment: str, *, first: bool, last: bool) -> None:
    if not segment:
        if not last:
            _refuse("empty segments ('//') are not allowed")
        return
    decoded = fully_decoded(segment)
    if decoded in (".", ".."):
        _refuse("'.' and '..' segments (also percent-encoded) are not allowed")
    if "/" in decoded or "\\" in decoded:
        _refuse("encoded slashes and backslashes (%2F, %5C) are not allowed")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in decoded):
        _refuse("encoded control characters are not allowed")
    if first and (_SCHEME.match(decoded) or "@" in decoded):
        _refuse("it looks like an absolute URL or user info ('scheme:', '@') in its first segment")


def fully_decoded(segment: str) -> str:
    """`segment` percent-decoded until it stops changing (bounded), so double encoding cannot hide a dot."""
    for _ in range(_MAX_DECODES):
        decoded = unquote(segment)
        if decoded == segment:
            return decoded
        segment = decoded
    _refuse("it is percent-encoded too many times")


def safe_query(query: bytes) -> str:
    """The raw query string as text if it is visible ASCII; else InvalidRequest."""
    text = query.decode("latin-1")
    if not _QUERY.fullmatch(text):
        raise InvalidRequest("The query string contains characters that are not allowed in a URL.",
                             code="invalid_path")
    return text


def _refuse(reason: str) -> NoReturn:
    raise InvalidRequest(f"This provider path is not allowed: {reason}.", code="invalid_path")
