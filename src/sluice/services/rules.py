"""The route table of the service gateway: rules compiled once, the most specific match for a request, the
service a split sends it to, and the path it goes upstream with.

Most specific wins, ties in config order: an exact path before any pattern; then the longer literal prefix
(`/api/users/**` before `/api/**`); then the rule with more conditions (methods, headers, query); a
`path_regex` rule counts its literal prefix (none if it starts with a group). `GET /admin/routes` shows the
table in this order. Rules are indexed by their first path segment, so a request looks only at the rules that
could match it (and those whose first segment is a pattern).
"""

from __future__ import annotations

import heapq
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sluice.services.options import RESERVED_PREFIXES, RouteConfig

_ANY = ""


@dataclass(slots=True)
class Rule:
    """One compiled route."""

    rank: int
    """Its place in match order (0 first)."""
    index: int
    """Its place in the config's `routes:`."""
    config: RouteConfig
    regex: re.Pattern[str]
    literal: str
    exact: bool
    methods: frozenset[str] | None
    headers: tuple[tuple[bytes, bytes], ...]
    query: tuple[tuple[str, str], ...]
    segment: str
    """The first path segment of every path it matches, or `_ANY` when that segment is a pattern."""
    _turns: dict[str, float] = field(default_factory=dict)
    same: str | None = None
    """The one path an exact `path` matches, compared without the regex."""
    under: str | None = None
    """For a `/prefix/**` path: the prefix, whose paths (and it) are matched with string tests, not the regex."""
    rewrite: re.Pattern[str] | None = None
    """The rewrite's pattern, compiled once."""

    def matches(self, method: str, path: str, headers: Mapping[bytes, bytes], query: Mapping[str, str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        if self.same is not None:
            if path != self.same:
                return False
        elif self.under is not None:
            under = self.under
            # What `(?:/.*)?` after the prefix matches: nothing, or a slash and anything but a newline.
            if not (path == under or path.startswith(under + "/") and "\n" not in path):
                return False
        elif not self.regex.fullmatch(path):
            return False
        for name, value in self.headers:
            if headers.get(name) != value:
                return False
        return all(query.get(name) == value for name, value in self.query)

    def service_for(self, headers: Mapping[bytes, bytes]) -> str:
        """The service this request goes to: the route's, or one side of its split (sticky by a header or cookie
        value when the route says so, else smooth weighted round-robin)."""
        config = self.config
        if config.service is not None:
            return config.service
        split = config.split or []
        sticky = config.sticky
        if sticky is not None:
            value = _sticky_value(sticky.header, sticky.cookie, headers)
            if value is not None:
                total = sum(target.weight for target in split)
                point = (zlib.crc32(value) % 10_000) / 10_000 * total
                for target in split:
                    point -= target.weight
                    if point < 0:
                        return target.service
                return split[-1].service
        turns, total, best = self._turns, 0.0, split[0]
        for target in split:
            turns[target.service] = turns.get(target.service, 0.0) + target.weight
            total += target.weight
            if turns[target.service] > turns[best.service]:
                best = target
        turns[best.service] -= total
        return best.service

    def upstream_path(self, path: str) -> str:
        """The path the service is sent: the prefix stripped, the rewrite applied, the prefix added."""
        config = self.config
        if config.strip_prefix and (path == config.strip_prefix or path.startswith(config.strip_prefix + "/")):
            path = path[len(config.strip_prefix):] or "/"
        if self.rewrite is not None and config.rewrite is not None:
            path = self.rewrite.sub(config.rewrite.replacement, path)
        if config.add_prefix:
            path = config.add_prefix.rstrip("/") + path
        return path

    def describe(self) -> dict[str, object]:
        """The rule as `GET /admin/routes` shows it."""
        return {"rank": self.rank, "index": self.index, **self.config.model_dump(exclude_defaults=True)}


class RuleTable:
    """The rules in match order; `match` finds the first that fits a request."""

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        compiled = [_compile(index, route) for index, route in enumerate(routes)]
        compiled.sort(key=_specificity)
        for rank, rule in enumerate(compiled):
            rule.rank = rank
        self.rules = compiled
        self._by_segment: dict[str, list[Rule]] = {}
        for rule in compiled:
            self._by_segment.setdefault(rule.segment, []).append(rule)

    def match(self, method: str, path: str, headers: Mapping[bytes, bytes], query: Mapping[str, str]) -> Rule | None:
        for rule in self._candidates(path):
            if rule.matches(method, path, headers, query):
                return rule
        return None

    def _candidates(self, path: str) -> Iterator[Rule]:
        segment = path.split("/", 2)[1] if "/" in path else _ANY
        own = self._by_segment.get(segment, []) if segment != _ANY else []
        wild = self._by_segment.get(_ANY, [])
        if not wild:
            return iter(own)
        if not own:
            return iter(wild)
        return heapq.merge(own, wild, key=lambda rule: rule.rank)


def shadowed_prefix(route: RouteConfig) -> str | None:
    """The built-in path `route` names (and would shadow), if any. A catch-all such as `/**` is allowed: the
    gateway's own paths are dispatched before any route is looked at."""
    literal = _literal_of(route).rstrip("/")
    for prefix in RESERVED_PREFIXES:
        if literal == prefix or literal.startswith(prefix + "/"):
            return prefix
    return None


def _literal_of(route: RouteConfig) -> str:
    if route.path is not None:
        return route.path.split("*", 1)[0].rstrip("/") if "*" in route.path else route.path
    match = re.match(r"\^?((?:[A-Za-z0-9_.~/-]|\\.)*)", route.path_regex or "")
    literal = match.group(1) if match else ""
    literal = re.sub(r"\\(.)", r"\1", literal)
    return literal if not literal.endswith(("\\",)) else literal[:-1]


def _compile(index: int, route: RouteConfig) -> Rule:
    if route.path is not None:
        regex, exact = _path_regex(route.path), "*" not in route.path
    else:
        regex, exact = re.compile(route.path_regex or ""), False
    return Rule(
        rank=0, index=index, config=route, regex=regex, literal=_literal_of(route), exact=exact,
        methods=frozenset(method.upper() for method in route.methods) if route.methods else None,
        headers=tuple((name.lower().encode("latin-1"), value.encode("latin-1"))
                      for name, value in route.headers.items()),
        query=tuple(route.query.items()), segment=_first_segment(route),
        same=_normalised(route.path) if route.path is not None and exact else None,
        under=_prefix_of(route.path) if route.path is not None else None,
        rewrite=re.compile(route.rewrite.pattern) if route.rewrite is not None else None)


def _segments(pattern: str) -> list[str]:
    return pattern.strip("/").split("/") if pattern != "/" else []


def _normalised(pattern: str) -> str:
    """The one path an exact pattern matches, as `_path_regex` reads it (outer slashes dropped)."""
    return "".join("/" + part for part in _segments(pattern)) or "/"


def _prefix_of(pattern: str) -> str | None:
    """`/a/b` of a `/a/b/**` pattern (`` of `/**`); None for any other pattern."""
    parts = _segments(pattern)
    if not parts or parts[-1] != "**" or any("*" in part for part in parts[:-1]):
        return None
    return "".join("/" + part for part in parts[:-1])


def _path_regex(pattern: str) -> re.Pattern[str]:
    """`/a/*/b` → one segment; `/a/**` → `/a` and everything below; `/a/**/b` → any depth between."""
    parts = pattern.strip("/").split("/") if pattern != "/" else []
    regex = ""
    for position, part in enumerate(parts):
        if part == "**":
            regex += "(?:/.*)?" if position == len(parts) - 1 else "(?:/[^/]+)*"
        else:
            regex += "/" + "[^/]+".join(re.escape(piece) for piece in part.split("*"))
    return re.compile(regex or "/")


def _specificity(rule: Rule) -> tuple[int, int, int, int]:
    conditions = (len(rule.methods) > 0 if rule.methods else 0) + len(rule.headers) + len(rule.query)
    return (0 if rule.exact else 1, -len(rule.literal), -conditions, rule.index)


def _first_segment(route: RouteConfig) -> str:
    """The first path segment every path `route` matches starts with, or `_ANY` when it is (part of) a pattern."""
    if route.path is not None:
        parts = route.path.split("/")
        first = parts[1] if len(parts) > 1 else ""
        return _ANY if not first or "*" in first else first
    literal = _literal_of(route)
    parts = literal.split("/")
    return parts[1] if len(parts) > 2 and parts[1] else _ANY  # a regex's segment counts once a slash follows it


def _sticky_value(header: str | None, cookie: str | None, headers: Mapping[bytes, bytes]) -> bytes | None:
    if header is not None:
        return headers.get(header.lower().encode("latin-1"))
    raw = headers.get(b"cookie")
    if raw is None or cookie is None:
        return None
    wanted = cookie.encode("latin-1") + b"="
    for part in raw.split(b";"):
        part = part.strip()
        if part.startswith(wanted):
            return part[len(wanted):]
    return None
