"""The admin console (/ui) in a real browser: Debian's chromium (`make browser`) driven by Playwright against a
served gateway (mock models, a SQLite request log, a service with two loopback instances). Sign-in, the live log
with a request the `openai` SDK made, its detail and a filter, a key created and revoked in the page and used by
the SDK, a usage chart, draining an instance, the audit trail; a screenshot of each page; the accessibility basics."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import DEV_KEY, run_gateway
from tests.servers import serve

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ADMIN = "sk-admin-console-test"
WAIT_MS = 10_000

A11Y_CHECK = """() => {
  const problems = [];
  const text = (el) => (el ? el.textContent.replace(/\\s+/g, " ").trim() : "");
  const labelled = (el) => (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
    .map((id) => text(document.getElementById(id))).join(" ").trim();
  const nameOf = (el) => (el.getAttribute("aria-label") || "").trim() || labelled(el)
    || [...(el.labels || [])].map(text).join(" ").trim() || (el.getAttribute("title") || "").trim();
  const visible = (el) => el.getClientRects().length > 0;
  if (!document.documentElement.lang) problems.push("<html> has no lang");
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type !== "hidden" && !nameOf(el)) problems.push(`unlabelled ${el.tagName} ${el.name || el.id}`);
  }
  for (const el of document.querySelectorAll("button, [role=button]")) {
    if (!(nameOf(el) || text(el))) problems.push(`button without a name: ${el.outerHTML.slice(0, 80)}`);
    if (el.tagName === "BUTTON" && !el.getAttribute("type")) problems.push(`button without a type: ${text(el)}`);
  }
  for (const el of document.querySelectorAll("a[href]")) {
    if (!(nameOf(el) || text(el))) problems.push(`link without a name: ${el.getAttribute("href")}`);
  }
  for (const el of document.querySelectorAll("img")) {
    if (!el.hasAttribute("alt")) problems.push(`img without alt: ${el.src}`);
  }
  for (const el of document.querySelectorAll("svg[role=img]")) {
    if (!nameOf(el)) problems.push("svg image without a name");
  }
  for (const el of document.querySelectorAll('[onclick], [onload], [style]:not([style=""])')) {
    problems.push(`inline handler or style: ${el.outerHTML.slice(0, 120)}`);
  }
  const ids = [...document.querySelectorAll("[id]")].map((el) => el.id);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) problems.push(`duplicate id ${id}`);
  for (const el of document.querySelectorAll("h1")) if (!visible(el)) problems.push("hidden h1");
  if (document.querySelectorAll("h1").length !== 1) problems.push(`${document.querySelectorAll("h1").length} h1`);
  return problems;
}"""


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: `make browser` (a dependency of `make test`) installs Debian's "
                        "chromium for this test")
        pytest.skip(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium, as root)")
    return CHROMIUM


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("SLUICE_TEST_ARTIFACTS") or tmp_path_factory.mktemp("console-artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def instance(name: str) -> Starlette:
    async def hello(request: Request) -> Response:
        return JSONResponse({"from": name})

    return Starlette(routes=[Route("/{path:path}", hello)])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("console-gateway")
    with serve(instance("a")) as a, serve(instance("b")) as b:
        config = f"""
providers:
  mock: {{type: mock}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: mock-b, provider: mock, model: mock-2}}
request_log: {{flush_interval_seconds: 0.1}}
services:
  users:
    strategy: round_robin
    instances: [{{url: "{a}"}}, {{url: "{b}"}}]
    health_check: {{path: /health, interval_seconds: 3600}}
routes:
  - {{path: "/api/**", service: users, strip_prefix: /api}}
"""
        with run_gateway(config, admin_key=ADMIN, data_dir=str(data_dir)) as url:
            yield {"url": url, "a": a, "b": b}


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own session storage); fails the test on a script error or a CSP violation."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def on_console(entry: ConsoleMessage) -> None:
        if entry.type == "error" and "Content Security Policy" in entry.text:
            problems.append(f"CSP: {entry.text}")

    opened.on("console", on_console)
    try:
        yield opened
    finally:
        context.close()
    assert problems == []


def sign_in(page: Page, gateway: dict[str, str], hash_: str = "#/log") -> None:
    page.goto(f"{gateway['url']}/ui/{hash_}")
    page.get_by_label("Admin key", exact=True).fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#sign-out:not([hidden])", timeout=WAIT_MS)


def screenshot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=True)
    assert (artifacts / f"console-{name}.png").stat().st_size > 0


AXE = Path(__file__).resolve().parents[2] / ".tools/axe/node_modules/axe-core/axe.min.js"
"""axe-core (`make browser` installs it from the npm registry): WCAG 2 A and AA rules, contrast included."""


def assert_accessible(page: Page) -> None:
    """The page's basics (labels, names, lang) by our own check, then axe-core's WCAG 2 A/AA rules. axe is loaded
    through the DevTools protocol, which the page's CSP does not govern (a script tag would be refused)."""
    problems: list[str] = page.evaluate(A11Y_CHECK)
    assert problems == [], problems
    if not AXE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AXE} is missing: run `make browser` (npm install axe-core)")
        return
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text())
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}}))"
        ".violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))")
    assert violations == [], violations


def sdk(gateway: dict[str, str], key: str = DEV_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway['url']}/v1", api_key=key, max_retries=0, timeout=10)


def chat(client: openai.OpenAI, model: str, text: str) -> str:
    """A chat completion; the gateway's request id of it."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])
    completion = raw.parse()
    assert completion.choices[0].message.content
    return raw.headers["x-request-id"]


def clear_filters(page: Page) -> None:
    """Clear, and wait for the unfiltered page to be drawn: the hash changes at once, the page is drawn on the
    hashchange event after it, so a field filled before that would be filled in the page on its way out."""
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("location.hash === '#/log' && "
                           "[...document.querySelectorAll('#log-filters input')].every((input) => !input.value)",
                           timeout=WAIT_MS)


def endpoint_missing(gateway: dict[str, str], path: str) -> bool:
    """Whether an admin endpoint another change adds answers 404 here (a stream is only opened, not read)."""
    with httpx.stream("GET", gateway["url"] + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10) as reply:
        return reply.status_code == 404


def test_sign_in_refuses_a_wrong_key_then_signs_in_and_out(page: Page, gateway: dict[str, str],
                                                           artifacts: Path) -> None:
    page.goto(f"{gateway['url']}/ui/")
    assert_accessible(page)
    page.get_by_label("Admin key", exact=True).fill("sk-not-the-admin-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for(timeout=WAIT_MS)
    assert "refused this key (401)" in alert.inner_text()
    assert page.evaluate("sessionStorage.length") == 0
    screenshot(page, artifacts, "sign-in-refused")
    page.get_by_label("Admin key", exact=True).fill(DEV_KEY)  # a working key without the admin scope
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("alert").filter(has_text="refused this key (403)").wait_for(timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.length") == 0

    page.get_by_label("Admin key", exact=True).fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#page-log h1", timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('sluice.adminKey')") == ADMIN
    assert page.evaluate("localStorage.length") == 0
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Admin key", exact=True).wait_for(timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.length") == 0


def test_live_log_shows_an_sdk_request_its_detail_and_filters(page: Page, gateway: dict[str, str],
                                                            artifacts: Path) -> None:
    sign_in(page, gateway)
    page.locator("#live-state", has_text="Live:").wait_for(timeout=WAIT_MS)
    marker = f"console-test-{uuid.uuid4().hex[:8]}"
    request_id = chat(sdk(gateway), "mock", f"Hello {marker}")
    finished = time.monotonic()
    details = page.get_by_role("button", name=f"Details of request {request_id}")
    details.wait_for(timeout=2_000)
    assert time.monotonic() - finished < 2.5  # wait_for's 2 s, plus the round trip of the check
    screenshot(page, artifacts, "log")
    assert_accessible(page)

    details.click()
    detail = page.locator("#log-detail")
    detail.get_by_role("heading", name=f"Request {request_id}").wait_for(timeout=WAIT_MS)
    facts = detail.locator("dl.facts").inner_text()
    for label in ("Total latency", "Upstream latency", "Gateway overhead", "Prompt tokens", "Completion tokens",
                  "Trace", "Model requested"):
        assert label in facts, (label, facts)
    assert marker in detail.locator("#detail-request").inner_text()
    assert "choices" in detail.locator("#detail-response").inner_text()
    screenshot(page, artifacts, "log-detail")
    assert_accessible(page)

    other = chat(sdk(gateway), "mock-b", f"Other model {marker}")
    page.get_by_role("button", name=f"Details of request {other}").wait_for(timeout=WAIT_MS)
    newest = page.locator("#log-rows tr").evaluate_all("rows => rows.map(row => row.dataset.at)")
    assert newest == sorted(newest, reverse=True) and len(newest) >= 2
    assert page.locator("#log-rows tr").first.get_by_role("button").get_attribute("aria-label") == \
        f"Details of request {other}"
    page.get_by_label("Model", exact=True).fill("mock")
    page.get_by_role("button", name="Apply filters").click()
    # The filtered table replaces the rows: the other model's goes, then this one's is drawn again.
    page.get_by_role("button", name=f"Details of request {other}").wait_for(state="detached", timeout=WAIT_MS)
    page.get_by_role("button", name=f"Details of request {request_id}").wait_for(timeout=WAIT_MS)
    models = page.locator("#log-rows tr").evaluate_all("rows => rows.map(row => row.dataset.model)")
    assert models and set(models) == {"mock"}
    assert "model=mock" in page.evaluate("location.hash")
    assert page.get_by_role("button", name=f"Details of request {other}").count() == 0

    clear_filters(page)
    page.get_by_label("Free text", exact=True).fill(f"other model {marker}")  # in the request body, any case
    page.get_by_role("button", name="Apply filters").click()
    page.get_by_role("button", name=f"Details of request {other}").wait_for(timeout=WAIT_MS)
    expect(page.locator("#log-rows tr")).to_have_count(1, timeout=WAIT_MS)  # once the filtered table is drawn

    clear_filters(page)
    page.get_by_role("button", name=f"Details of request {other}").wait_for(timeout=WAIT_MS)
    page.get_by_label("To (local time)", exact=True).fill("2020-01-01T00:00")  # a range that ended long ago
    page.get_by_role("button", name="Apply filters").click()
    assert "until=2020-01-01T" in page.evaluate("decodeURIComponent(location.hash)")
    expect(page.locator("#log-rows tr")).to_have_count(0, timeout=WAIT_MS)  # once the new page is drawn
    page.locator("#live-state", has_text="Live:").wait_for(timeout=WAIT_MS)
    page.get_by_label("Service", exact=True).wait_for(timeout=WAIT_MS)  # the service filter is offered too


def test_live_log_reads_the_stream(page: Page, gateway: dict[str, str]) -> None:
    if endpoint_missing(gateway, "/admin/logs/stream"):
        pytest.skip("GET /admin/logs/stream answers 404 here (added by another change): the console polls "
                    "/admin/logs instead, which the test above covers")
    sign_in(page, gateway)
    page.locator("#live-state", has_text="following new requests as they finish").wait_for(timeout=WAIT_MS)


def test_pages_fall_back_when_the_newer_endpoints_are_missing(page: Page, gateway: dict[str, str]) -> None:
    """A gateway from before /admin/logs/stream, /admin/usage/series and /admin/audit (their 404 made here)."""
    missing = '{"error": {"message": "Not found", "type": "invalid_request_error", "code": "not_found"}}'
    for pattern in ("**/admin/logs/stream*", "**/admin/usage/series*", "**/admin/audit*"):
        page.route(pattern, lambda route: route.fulfill(status=404, body=missing, content_type="application/json"))
    sign_in(page, gateway)
    page.locator("#live-state", has_text="every second").wait_for(timeout=WAIT_MS)
    request_id = chat(sdk(gateway), "mock", "while polling")
    page.get_by_role("button", name=f"Details of request {request_id}").wait_for(timeout=2_000)

    page.goto(f"{gateway['url']}/ui/#/usage?group_by=model&bucket=hour&metric=requests&hours=1")
    page.locator("#usage-chart svg.chart circle.point").first.wait_for(timeout=WAIT_MS)
    assert "no /admin/usage/series" in page.locator("#usage-chart").inner_text()

    page.goto(f"{gateway['url']}/ui/#/audit")
    page.locator("#audit-status", has_text="answered 404").wait_for(timeout=WAIT_MS)


def test_key_created_in_the_page_works_with_the_sdk_until_revoked(page: Page, gateway: dict[str, str],
                                                                  artifacts: Path) -> None:
    sign_in(page, gateway, "#/keys")
    name = f"console-{uuid.uuid4().hex[:6]}"
    form = page.locator("#new-key-form")
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Models", exact=True).fill("mock")
    form.get_by_label("Requests per minute", exact=True).fill("100")
    form.get_by_label("Budget (USD)", exact=True).fill("5")
    form.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key-secret")
    secret.wait_for(timeout=WAIT_MS)
    key = secret.inner_text().strip()
    assert key.startswith("sk-sluice-")
    page.get_by_role("button", name="Copy the secret").click()
    page.get_by_text("Copied.").wait_for(timeout=WAIT_MS)
    assert page.evaluate("navigator.clipboard.readText()") == key
    row = page.locator(f"#keys-table tr[data-key-name='{name}']")
    row.wait_for(timeout=WAIT_MS)
    assert "of $5.00 (monthly)" in row.inner_text() and "Requests per minute: 100" in row.inner_text()
    screenshot(page, artifacts, "keys")
    assert_accessible(page)

    client = sdk(gateway, key)
    assert chat(client, "mock", "from a key made in the console")
    with pytest.raises(openai.NotFoundError):  # outside its models scope
        chat(client, "mock-b", "not in scope")

    page.get_by_role("button", name=f"Edit key {name}").click()
    edit = page.locator("#edit-key-form")
    edit.get_by_label("Models", exact=True).fill("mock, mock-b")
    edit.get_by_role("button", name="Save changes").click()
    page.get_by_text(f"Key {name} was saved.").wait_for(timeout=WAIT_MS)
    assert chat(client, "mock-b", "now in scope")

    page.get_by_role("button", name=f"Revoke key {name}").click()
    page.get_by_role("button", name=f"Confirm: revoke key {name}").click()
    page.locator(f"tr[data-key-name='{name}'] .key-status", has_text="revoked").wait_for(timeout=WAIT_MS)
    with pytest.raises(openai.AuthenticationError) as refused:
        chat(client, "mock", "after the revocation")
    assert refused.value.status_code == 401


def test_key_rotated_in_the_page(page: Page, gateway: dict[str, str]) -> None:
    created = httpx.post(f"{gateway['url']}/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"name": f"rotate-{uuid.uuid4().hex[:6]}"})
    created.raise_for_status()
    old, name = created.json()["key"], created.json()["name"]
    assert chat(sdk(gateway, old), "mock", "before the rotation")
    sign_in(page, gateway, "#/keys")
    page.get_by_role("button", name=f"Rotate key {name}").click()
    secret = page.locator("#new-key-secret")
    secret.wait_for(timeout=WAIT_MS)
    new = secret.inner_text().strip()
    assert new.startswith("sk-sluice-") and new != old
    assert "rotated" in page.locator("#key-secret").inner_text()
    assert chat(sdk(gateway, new), "mock", "with the new secret")
    with pytest.raises(openai.AuthenticationError):
        chat(sdk(gateway, old), "mock", "with the old secret")


def test_usage_chart_draws_points(page: Page, gateway: dict[str, str], artifacts: Path) -> None:
    chat(sdk(gateway), "mock", "for the usage chart")
    sign_in(page, gateway, "#/usage")
    page.get_by_label("Group by", exact=True).select_option("model")
    page.get_by_label("Metric", exact=True).select_option("requests")
    page.get_by_label("Period", exact=True).select_option("1")
    page.get_by_role("button", name="Show chart").click()
    # The chart is drawn again for the chosen options (the first one, for the defaults, may still be there).
    page.wait_for_function("['group_by=model', 'metric=requests', 'hours=1']"
                           ".every((part) => location.hash.includes(part))", timeout=WAIT_MS)
    chart = page.locator("#usage-chart svg.chart")
    expect(chart.locator("title").first).to_contain_text("Requests", timeout=WAIT_MS)
    expect(chart.locator("g.series[data-group='mock']")).to_have_count(1, timeout=WAIT_MS)
    assert chart.locator("circle.point").count() >= 1
    assert chart.locator("line.axis").count() == 2 and chart.locator("text").count() > 4
    assert "Requests" in (chart.locator("title").first.text_content() or "")
    screenshot(page, artifacts, "usage")
    assert_accessible(page)


def test_usage_latency_from_the_series(page: Page, gateway: dict[str, str]) -> None:
    if endpoint_missing(gateway, "/admin/usage/series?group_by=model&bucket=hour"):
        pytest.skip("GET /admin/usage/series answers 404 here (added by another change): the chart uses "
                    "/admin/usage, without latency")
    chat(sdk(gateway), "mock", "for the latency chart")
    sign_in(page, gateway, "#/usage?group_by=model&bucket=minute&metric=latency_p95_ms&hours=1")
    page.locator("#usage-chart svg.chart circle.point").first.wait_for(timeout=WAIT_MS)


def test_drain_and_restore_an_instance(page: Page, gateway: dict[str, str], artifacts: Path) -> None:
    sign_in(page, gateway, "#/upstreams")
    service = page.locator("section[data-service='users']")
    service.wait_for(timeout=WAIT_MS)
    page.locator("table[data-model='mock']").wait_for(timeout=WAIT_MS)
    screenshot(page, artifacts, "upstreams")
    assert_accessible(page)
    states = "section[data-service='users'] .instance-state"
    assert page.locator(states).all_inner_texts() == ["in service", "in service"]
    assert "null" not in service.inner_text() and "undefined" not in service.inner_text()

    page.get_by_role("button", name=f"Drain instance {gateway['b']}").click()
    page.get_by_role("button", name=f"Restore instance {gateway['b']}").wait_for(timeout=WAIT_MS)
    assert page.evaluate("document.activeElement.textContent") == "Restore"  # the focus stays on the control
    assert page.locator(states).all_inner_texts() == ["in service", "draining"]
    seen = httpx.get(f"{gateway['url']}/admin/services/users", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert [i["draining"] for i in seen["instances"]] == [False, True]
    assert {httpx.get(f"{gateway['url']}/api/x", headers={"Authorization": f"Bearer {DEV_KEY}"}).json()["from"]
            for _ in range(4)} == {"a"}

    page.get_by_role("button", name=f"Restore instance {gateway['b']}").click()
    page.get_by_role("button", name=f"Drain instance {gateway['b']}").wait_for(timeout=WAIT_MS)
    assert page.locator(states).all_inner_texts() == ["in service", "in service"]
    page.get_by_role("button", name="Check users's instances now").click()
    checks = page.locator("section[data-service='users'] tr[data-instance] td:nth-child(9)")
    page.locator("section[data-service='users'] td", has_text="healthy (200) at").first.wait_for(timeout=WAIT_MS)
    assert all(text.startswith("healthy (200) at") for text in checks.all_inner_texts()), checks.all_inner_texts()
    page.get_by_role("button", name="Check deployments now").click()
    page.locator("table[data-model='mock']").wait_for(timeout=WAIT_MS)


def test_audit_trail(page: Page, gateway: dict[str, str], artifacts: Path) -> None:
    sign_in(page, gateway, "#/audit")
    page.locator("#audit-table").wait_for(timeout=WAIT_MS)
    page.locator("#audit-status", has_not_text="Loading").wait_for(state="attached", timeout=WAIT_MS)
    screenshot(page, artifacts, "audit")
    assert_accessible(page)
    if endpoint_missing(gateway, "/admin/audit"):
        assert "answered 404" in page.locator("#audit-status").inner_text()
        pytest.skip("GET /admin/audit answers 404 here (added by another change): the page says so")
    created = httpx.post(f"{gateway['url']}/admin/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                         json={"name": "for-the-audit"})
    created.raise_for_status()
    page.reload()
    row = page.locator("#audit-rows tr", has_text=created.json()["id"]).first
    row.wait_for(timeout=WAIT_MS)
    assert "key.create" in row.inner_text() and "admin-key" in row.inner_text()


def test_keyboard_navigation_and_visible_focus(page: Page, gateway: dict[str, str]) -> None:
    sign_in(page, gateway)
    page.locator("#page-log h1").wait_for(timeout=WAIT_MS)
    page.reload()  # nothing focused; still signed in (session storage)
    page.locator("#page-log h1").wait_for(timeout=WAIT_MS)
    for _ in range(3):  # the brand text is not focusable: Tab reaches the nav links first
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('href')") == "#/usage":
            break
    assert page.evaluate("document.activeElement.getAttribute('href')") == "#/usage"
    outline: dict[str, Any] = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return {style: s.outlineStyle, "
        "width: parseFloat(s.outlineWidth)}; })()")
    assert outline["style"] != "none" and outline["width"] >= 2
    page.keyboard.press("Enter")
    page.locator("#page-usage h1").wait_for(timeout=WAIT_MS)
    assert page.locator("nav a[aria-current=page]").inner_text() == "Usage"
