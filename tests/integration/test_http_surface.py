"""What a new user meets first: /docs offline, the Authorize dialog, /v1/models under key scopes, OpenAI endpoints
Sluice does not serve, and a projects-only key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from sluice.config import parse_config
from sluice.http.unsupported import unknown_route
from tests.conftest import DEV_KEY, run_gateway
from tests.fakes.openai import create_fake_openai
from tests.servers import serve

CONFIG = """
providers:
  mock: {{type: mock}}
  up: {{type: openai, base_url: "{url}/v1", api_key: upstream-key}}
models:
  - {{name: mock, provider: mock, model: mock-1}}
  - {{name: gpt-test, provider: up, model: gpt-test, aliases: [gpt-alias]}}
  - {{name: gpt-mini, provider: up, model: gpt-4o-mini}}
projects:
  - {{name: demo, module: sluice.projects.demo}}
discover_projects: false
static_keys:
  - {{key: sk-mock-only, providers: [mock]}}
  - {{key: sk-up-only, providers: [up]}}
  - {{key: sk-alias-only, models: [gpt-alias, mock]}}
  - {{key: sk-both-scopes, models: [mock, gpt-test], providers: [up]}}
  - {{key: sk-demo-only, projects: [demo], projects_only: true}}
"""


@pytest.fixture(scope="module")
def sluice_url() -> Iterator[str]:
    upstream = create_fake_openai()
    with serve(upstream) as upstream_url, run_gateway(CONFIG.format(url=upstream_url)) as url:
        yield url


def sdk(url: str, key: str = DEV_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# --- /docs with no internet -----------------------------------------------------------------------------------

_ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?'([^']+)'""")


@pytest.mark.parametrize(("page", "kinds"), [
    ("/docs", {"text/javascript", "text/css", "image/png", "application/json"}),
    ("/redoc", {"text/javascript", "image/png", "application/json"})])
def test_docs_pages_load_every_asset_from_the_gateway(sluice_url: str, page: str, kinds: set[str]) -> None:
    html = httpx.get(sluice_url + page)
    assert html.status_code == 200
    urls = {next(group for group in match.groups() if group) for match in _ASSET.finditer(html.text)}
    urls.update(re.findall(r'spec-url="([^"]+)"', html.text))
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "http://" not in html.text and "https://" not in html.text
    served = set()
    for url in urls:
        asset = httpx.get(sluice_url + url)
        assert asset.status_code == 200 and asset.content, url
        served.add(asset.headers["content-type"].split(";")[0])
    assert served == kinds


def test_authorize_dialog_has_one_scheme_for_callers_and_one_for_admins(sluice_url: str) -> None:
    document = httpx.get(sluice_url + "/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"HTTPBearer", "AdminBearer"}
    assert all(scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
               for scheme in schemes.values())
    named = {str(operation.get("security")) for item in document["paths"].values() for operation in item.values()}
    assert named == {"None", "[{'HTTPBearer': []}]", "[{'AdminBearer': []}]"}
    for method, path in (("post", "/v1/chat/completions"), ("get", "/v1/models"), ("post", "/projects/demo/summary"),
                         ("get", "/provider/{name}/{path}")):
        assert document["paths"][path][method]["security"] == [{"HTTPBearer": []}], path
    assert document["paths"]["/admin/keys"]["post"]["security"] == [{"AdminBearer": []}]


# --- /v1/models under key scopes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "listed", "aliases"), [
    (DEV_KEY, ["mock", "gpt-test", "gpt-mini"], ["gpt-alias"]),
    ("sk-mock-only", ["mock"], []),
    ("sk-up-only", ["gpt-test", "gpt-mini"], ["gpt-alias"]),
    ("sk-alias-only", ["mock", "gpt-alias"], []),
    ("sk-both-scopes", ["gpt-test"], []),
    ("sk-demo-only", [], []),
])
def test_models_lists_exactly_what_the_key_may_call(sluice_url: str, key: str, listed: list[str],
                                                    aliases: list[str]) -> None:
    """`aliases`: callable too, though a key without a `models` scope sees only the models' own names."""
    client = sdk(sluice_url, key)
    assert [model.id for model in client.models.list()] == listed
    for name in ("mock", "gpt-test", "gpt-alias", "gpt-mini"):
        chat = httpx.post(sluice_url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": name, "messages": [{"role": "user", "content": "hi"}]})
        assert (chat.status_code == 200) == (name in listed + aliases), (name, chat.text)
        if name in listed:
            assert client.models.retrieve(name).id == name
        else:
            with pytest.raises(openai.NotFoundError):
                client.models.retrieve(name)


# --- OpenAI endpoints Sluice does not serve -------------------------------------------------------------------

def _assert_unsupported(error: dict[str, object], method: str, path: str) -> None:
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert error["code"] == "unsupported_endpoint"
    message = str(error["message"])
    assert message.startswith(f"{method} {path} is not supported by this gateway")
    assert "/provider/{name}/" in message


def test_sdk_calls_to_unsupported_endpoints_raise_not_found(sluice_url: str) -> None:
    client = sdk(sluice_url)
    calls = {
        ("POST", "/v1/moderations"): lambda: client.moderations.create(input="hi"),
        ("POST", "/v1/images/generations"): lambda: client.images.generate(prompt="a cat"),
        ("POST", "/v1/audio/speech"): lambda: client.audio.speech.create(model="tts-1", voice="alloy", input="hi"),
        ("GET", "/v1/files"): lambda: client.files.list(),
        ("GET", "/v1/batches"): lambda: client.batches.list(),
        ("GET", "/v1/responses/resp_1/input_items"): lambda: client.responses.input_items.list("resp_1"),
        ("GET", "/v1/fine_tuning/jobs"): lambda: client.fine_tuning.jobs.list(),
        ("GET", "/v1/chat/completions/chatcmpl-1"): lambda: client.chat.completions.retrieve("chatcmpl-1"),
    }
    for (method, path), call in calls.items():
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert isinstance(raised.value.body, dict), path
        _assert_unsupported(raised.value.body, method, path)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations"), ("POST", "/v1/images/edits"),
    ("POST", "/v1/files"), ("POST", "/v1/batches"), ("GET", "/v1/vector_stores"), ("POST", "/v1/uploads")])
def test_unsupported_endpoints_answer_openai_shaped_404s(sluice_url: str, method: str, path: str) -> None:
    reply = httpx.request(method, sluice_url + path, headers={"Authorization": f"Bearer {DEV_KEY}"}, content=b"{}")
    assert reply.status_code == 404 and reply.headers["content-type"] == "application/json"
    _assert_unsupported(reply.json()["error"], method, path)


def test_other_unknown_paths_stay_unknown_routes(sluice_url: str) -> None:
    reply = httpx.get(sluice_url + "/nope")
    assert reply.status_code == 404
    assert reply.json()["error"] == {"message": "Unknown route: GET /nope", "type": "invalid_request_error",
                                     "param": None, "code": "not_found"}


def test_the_gateway_names_its_own_provider(sluice_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(sluice_url).moderations.create(input="hi")
    assert isinstance(raised.value.body, dict)
    assert "here /provider/up/moderations goes to up's base URL + /moderations." in str(raised.value.body["message"])


@pytest.mark.parametrize(("providers", "hint"), [
    ("mock: {type: mock}\n  up: {type: openai, base_url: 'http://127.0.0.1:9/v1'}",
     "here /provider/up/moderations goes to up's base URL + /moderations."),
    ("claude: {type: anthropic, base_url: 'http://127.0.0.1:9', api_key: k}",
     "/provider/{name}/… reaches a provider's own API (configured: claude)."),
    ("mock: {type: mock}", "once the config has one with an upstream"),
])
def test_the_hint_names_a_configured_provider(providers: str, hint: str) -> None:
    config = parse_config(f"providers:\n  {providers}\n", "t.yaml")

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await unknown_route(scope, send, config.providers)  # type: ignore[arg-type]

    with serve(app, lifespan="off") as url:
        with pytest.raises(openai.NotFoundError) as raised:
            sdk(url).moderations.create(input="hi")
    assert isinstance(raised.value.body, dict)
    _assert_unsupported(raised.value.body, "POST", "/v1/moderations")
    assert hint in str(raised.value.body["message"])


# --- a projects-only key --------------------------------------------------------------------------------------

def test_projects_only_key_reaches_no_model_or_provider_directly(sluice_url: str) -> None:
    headers = {"Authorization": "Bearer sk-demo-only"}
    chat = httpx.post(sluice_url + "/v1/chat/completions", headers=headers,
                      json={"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "model_not_found"
    passthrough = httpx.get(sluice_url + "/provider/up/models", headers=headers)
    assert passthrough.status_code == 403 and "only call projects" in passthrough.json()["error"]["message"]
    assert httpx.get(sluice_url + "/v1/models", headers=headers).json() == {"object": "list", "data": []}




def test_projects_only_key_calls_its_project(sluice_url: str) -> None:
    reply = httpx.post(sluice_url + "/projects/demo/summary", headers={"Authorization": "Bearer sk-demo-only"},
                       json={"text": "Sluice is a gateway. It routes requests."})
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"title", "summary", "steps"}
