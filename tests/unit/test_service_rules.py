"""The service gateway's route table: patterns, most specific match, conditions, splits, rewrites, reserved paths."""

from __future__ import annotations

from collections import Counter

import pytest

from sluice.services.options import RouteConfig
from sluice.services.rules import RuleTable, shadowed_prefix


def table(*routes: dict[str, object]) -> RuleTable:
    return RuleTable([RouteConfig.model_validate(route) for route in routes])


def service(rules: RuleTable, path: str, method: str = "GET", headers: dict[bytes, bytes] | None = None,
            query: dict[str, str] | None = None) -> str | None:
    rule = rules.match(method, path, headers or {}, query or {})
    return None if rule is None else rule.service_for(headers or {})


def test_patterns_match_as_documented() -> None:
    rules = table({"path": "/api/users/**", "service": "users"}, {"path": "/ws/chat", "service": "chat"},
                  {"path": "/api/*/items", "service": "items"}, {"path": "/files/**/raw", "service": "raw"},
                  {"path_regex": r"/v[0-9]+/legacy/.*", "service": "legacy"})
    assert service(rules, "/api/users") == service(rules, "/api/users/7/orders") == "users"
    assert service(rules, "/api/usersx") is None
    assert service(rules, "/ws/chat") == "chat" and service(rules, "/ws/chat/x") is None
    assert service(rules, "/api/shop/items") == "items" and service(rules, "/api/a/b/items") is None
    assert service(rules, "/files/raw") == service(rules, "/files/a/b/raw") == "raw"
    assert service(rules, "/v2/legacy/x") == "legacy" and service(rules, "/vx/legacy/x") is None


def test_the_most_specific_rule_wins_whatever_the_config_order() -> None:
    rules = table({"path": "/api/**", "service": "api"},
                  {"path": "/api/orders/**", "service": "orders"},
                  {"path": "/api/orders/**", "headers": {"X-Version": "2"}, "service": "orders-v2"},
                  {"path": "/api/orders/42", "service": "exact"},
                  {"path": "/api/orders/**", "methods": ["DELETE"], "query": {"force": "1"}, "service": "purge"})
    assert service(rules, "/api/other") == "api"
    assert service(rules, "/api/orders/1") == "orders"
    assert service(rules, "/api/orders/1", headers={b"x-version": b"2"}) == "orders-v2"
    assert service(rules, "/api/orders/42", headers={b"x-version": b"2"}) == "exact"
    assert service(rules, "/api/orders/1", "DELETE", query={"force": "1"}) == "purge"
    assert service(rules, "/api/orders/1", "DELETE") == "orders"
    assert [rule.config.service for rule in rules.rules] == ["exact", "purge", "orders-v2", "orders", "api"]


def test_a_weighted_split_follows_its_weights_and_sticky_keeps_a_caller() -> None:
    split = {"path": "/api/orders/**", "split": [{"service": "orders", "weight": 90},
                                                  {"service": "canary", "weight": 10}]}
    rules = table(split)
    counts = Counter(service(rules, "/api/orders/1") for _ in range(1000))
    assert counts == {"orders": 900, "canary": 100}
    sticky = table({**split, "sticky": {"cookie": "session"}})
    callers = [f"session=user-{n}".encode() for n in range(400)]
    first = [service(sticky, "/api/orders", headers={b"cookie": c}) for c in callers]
    again = [service(sticky, "/api/orders", headers={b"cookie": b"theme=dark; " + c}) for c in callers]
    assert first == again
    assert 0.8 < first.count("orders") / len(first) < 0.97


def test_paths_are_rewritten_before_they_go_upstream() -> None:
    rules = table({"path": "/api/users/**", "service": "users", "strip_prefix": "/api"},
                  {"path": "/old/**", "service": "new", "rewrite": {"pattern": "^/old/(.*)$", "replacement": r"/v2/\1"},
                   "add_prefix": "/svc"})
    users = rules.match("GET", "/api/users/7", {}, {})
    assert users is not None and users.upstream_path("/api/users/7") == "/users/7"
    new = rules.match("GET", "/old/a/b", {}, {})
    assert new is not None and new.upstream_path("/old/a/b") == "/svc/v2/a/b"


@pytest.mark.parametrize(("path", "shadowed"), [("/v1/chat/**", "/v1"), ("/admin", "/admin"),
                                                 ("/health/**", "/health"), ("/api/**", None), ("/**", None),
                                                 ("/v10/**", None)])
def test_a_rule_naming_a_built_in_path_is_refused(path: str, shadowed: str | None) -> None:
    assert shadowed_prefix(RouteConfig(path=path, service="s")) == shadowed


def test_a_thousand_rules_are_indexed_by_their_first_segment() -> None:
    rules = table(*({"path": f"/svc{n}/**", "service": f"s{n}"} for n in range(1000)),
                  {"path": "/**", "service": "default"})
    assert service(rules, "/svc999/x") == "s999" and service(rules, "/nothing") == "default"
    assert len(list(rules._candidates("/svc5/x"))) == 2  # its own rule and the catch-all, not 1,001


@pytest.mark.parametrize(("pattern", "matched", "unmatched"), [
    ("/svc/**", ["/svc", "/svc/", "/svc/a/b"], ["/svcx", "/svc\n", "/svc/a\nb", "/"]),
    ("/**", ["/", "/a", "/a/b/"], ["/a\nb"]),
    ("//a//**", ["/a/", "/a//b"], ["/a", "/a/b"]),
    ("/a/b/", ["/a/b"], ["/a/b/", "/a", "/a/b/c"]),
    ("/", ["/"], ["/a", ""]),
])
def test_prefix_and_exact_paths_match_as_their_pattern_reads(pattern: str, matched: list[str],
                                                             unmatched: list[str]) -> None:
    rules = table({"path": pattern, "service": "s"})
    assert [service(rules, path) for path in matched] == ["s"] * len(matched)
    assert [service(rules, path) for path in unmatched] == [None] * len(unmatched)
