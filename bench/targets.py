"""The targets measured side by side: how to start each, and the request it gets for each scenario."""

from __future__ import annotations

import http.client
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import Call

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
NGINX_MODULES = Path("/usr/lib/nginx/modules")
SLUICE_KEY = "sk-bench"
LITELLM_KEY = "sk-bench-3f9c2a7d41e8b6c05d2f7a9e1c4b8d63"  # LiteLLM refuses to start with a weak or no master key
PROMPT = [{"role": "user", "content": "Hello there, how are you?"}]
SCENARIOS = ("chat", "stream", "embeddings", "passthrough", "anthropic", "anthropic_stream", "slow")


def chat_body(model: str, stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": model, "messages": PROMPT}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def anthropic_body(stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": "claude-bench", "max_tokens": 1024, "messages": PROMPT}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


EMBED_BODY = json.dumps({"model": "gpt-bench", "input": "Hello there, how are you?"}).encode()


@dataclass(frozen=True)
class Launch:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None


# Request for a scenario (port given), or a string saying why the target has no such scenario.
Requests = Callable[[int, str], Call | str]


@dataclass(frozen=True)
class Target:
    """A process to measure: `launch(port, upstream_url)` says how to start it, `request` what to send it."""

    name: str
    label: str
    launch: Callable[[int, str], Launch]
    request: Requests
    ready_timeout: float = 30.0
    version: Callable[[], str] = lambda: "?"
    unavailable: Callable[[], str | None] = lambda: None

    def call(self, port: int, scenario: str) -> Call | str:
        return self.request(port, scenario)


def relay_request(port: int, scenario: str) -> Call | str:
    """Targets that relay paths to the upstream unchanged: direct, nginx and the floors."""
    paths = {"chat": ("/v1/chat/completions", chat_body("gpt-bench")),
             "stream": ("/stream/v1/chat/completions", chat_body("gpt-bench", stream=True)),
             "embeddings": ("/v1/embeddings", EMBED_BODY),
             "slow": ("/slow/v1/chat/completions", chat_body("gpt-bench"))}
    if scenario not in paths:
        return "—"
    path, body = paths[scenario]
    return Call(port, path, body)


def direct_request(port: int, scenario: str) -> Call | str:
    """The upstream itself; its /v1/messages is the baseline for the Anthropic translation."""
    if scenario == "anthropic":
        return Call(port, "/v1/messages", anthropic_body())
    if scenario == "anthropic_stream":
        return Call(port, "/stream/v1/messages", anthropic_body(stream=True))
    if scenario == "passthrough":
        return relay_request(port, "chat")
    return relay_request(port, scenario)


def sluice_request(port: int, scenario: str) -> Call | str:
    auth = (("Authorization", f"Bearer {SLUICE_KEY}"),)
    calls = {"chat": ("/v1/chat/completions", chat_body("gpt-bench")),
             "stream": ("/v1/chat/completions", chat_body("gpt-stream", stream=True)),
             "embeddings": ("/v1/embeddings", EMBED_BODY),
             "passthrough": ("/provider/up/v1/chat/completions", chat_body("gpt-bench")),
             "anthropic": ("/v1/chat/completions", chat_body("claude-bench")),
             "anthropic_stream": ("/v1/chat/completions", chat_body("claude-stream", stream=True)),
             "slow": ("/v1/chat/completions", chat_body("gpt-slow"))}
    path, body = calls[scenario]
    return Call(port, path, body, auth)


def litellm_request(port: int, scenario: str) -> Call | str:
    auth = (("Authorization", f"Bearer {LITELLM_KEY}"),)
    calls = {"chat": ("/v1/chat/completions", chat_body("gpt-bench")),
             "stream": ("/v1/chat/completions", chat_body("gpt-stream", stream=True)),
             "embeddings": ("/v1/embeddings", EMBED_BODY),
             "slow": ("/v1/chat/completions", chat_body("gpt-slow"))}
    if scenario not in calls:
        return "n/a" if scenario == "passthrough" else "—"
    path, body = calls[scenario]
    return Call(port, path, body, auth)


def portkey_request(upstream: Callable[[], str]) -> Requests:
    def request(port: int, scenario: str) -> Call | str:
        prefixes = {"chat": "/v1", "stream": "/stream/v1", "slow": "/slow/v1", "embeddings": "/v1"}
        if scenario not in prefixes:
            return "n/a" if scenario == "passthrough" else "—"
        headers = (("Authorization", "Bearer bench"), ("x-portkey-provider", "openai"),
                   ("x-portkey-custom-host", upstream() + prefixes[scenario]))
        if scenario == "embeddings":  # answers only with bench/install.py's immutable-headers workaround
            return Call(port, "/v1/embeddings", EMBED_BODY, headers)
        return Call(port, "/v1/chat/completions", chat_body("gpt-bench", stream=scenario == "stream"), headers)
    return request


def nginx_conf(template: str, port: int, **values: object) -> Launch:
    """Render an nginx config from bench/upstream/ into a fresh prefix directory; start in the foreground."""
    prefix = Path(tempfile.mkdtemp(prefix="sluice-bench-nginx-"))
    modules = "\n".join(f"load_module {NGINX_MODULES / m};" for m in ("ndk_http_module.so", "ngx_http_lua_module.so"))
    text = (BENCH / "upstream" / template).read_text().format(
        modules=modules, prefix=prefix, port=port, lua_dir=BENCH / "upstream", **values)
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return Launch(["nginx", "-e", str(prefix / "error.log"), "-p", str(prefix), "-c", str(conf)])


def upstream_launch(port: int, _upstream: str = "") -> Launch:
    return nginx_conf("upstream.conf.tmpl", port)


def proxy_launch(port: int, upstream: str) -> Launch:
    return nginx_conf("proxy.conf.tmpl", port, upstream_port=upstream.rsplit(":", 1)[1])


def python_launch(script: str) -> Callable[[int, str], Launch]:
    def launch(port: int, upstream: str) -> Launch:
        return Launch([str(ROOT / ".venv/bin/python"), str(BENCH / script), "--port", str(port)],
                      {"BENCH_UPSTREAM": upstream})
    return launch


def sluice_launch(workers: int, env: dict[str, str] | None = None) -> Callable[[int, str], Launch]:
    def launch(port: int, upstream: str) -> Launch:
        cmd = [str(ROOT / ".venv/bin/sluice"), "serve", "--config", str(BENCH / "sluice-bench.yaml"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        return Launch(cmd, {"SLUICE_API_KEYS": SLUICE_KEY, "BENCH_UPSTREAM": upstream, **(env or {})}, ROOT)
    return launch


def litellm_launch(port: int, upstream: str) -> Launch:
    config = PEERS / "litellm-bench.yaml"
    models = [("gpt-bench", "/v1"), ("gpt-stream", "/stream/v1"), ("gpt-slow", "/slow/v1")]
    lines = ["model_list:"]
    for name, prefix in models:
        lines += [f"  - model_name: {name}", "    litellm_params:", "      model: openai/gpt-bench",
                  f"      api_base: {upstream}{prefix}", "      api_key: bench"]
    lines += ["litellm_settings:", "  set_verbose: false", "  request_timeout: 60", "  telemetry: false",
              "general_settings:", f"  master_key: {LITELLM_KEY}", "  disable_spend_logs: true",
              "  disable_error_logs: true"]
    config.write_text("\n".join(lines) + "\n")
    cmd = [str(PEERS / "litellm/bin/litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "1", "--telemetry", "False"]
    return Launch(cmd, {"LITELLM_LOG": "ERROR", "LITELLM_MODE": "PRODUCTION", "DISABLE_ADMIN_UI": "True"}, PEERS)


def portkey_launch(port: int, _upstream: str) -> Launch:
    script = PEERS / "portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
    return Launch(["node", str(script), f"--port={port}", "--headless"], {"NODE_ENV": "production"})


def command_output(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"? ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def probe(call: Call) -> Callable[[http.client.HTTPConnection], int]:
    def send(conn: http.client.HTTPConnection) -> int:
        conn.request(call.method, call.path, body=call.body,
                     headers={"Content-Type": "application/json", **dict(call.headers)})
        response = conn.getresponse()
        response.read()
        return response.status
    return send


def ws_proxy_launch(port: int, upstream: str) -> Launch:
    """nginx as a WebSocket reverse proxy (Upgrade and Connection passed on) to `upstream`."""
    return nginx_conf("ws_proxy.conf.tmpl", port, upstream_port=upstream.rsplit(":", 1)[1])
