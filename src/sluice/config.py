"""The sluice.yaml model, `${VAR}` interpolation, and errors that name the file and the key path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sluice.http.cors import CorsConfig
from sluice.keys.options import JwtConfig, KeysConfig
from sluice.limits.options import Budget, Limits, RateLimit
from sluice.mcp.options import McpScope, McpServers
from sluice.pricing import Price
from sluice.prompts import PromptConfig
from sluice.routing.options import BreakerOptions, HealthCheckOptions, RetryOptions, Strategy
from sluice.services.options import RouteConfig, ServiceConfig
from sluice.store.options import RequestLogConfig
from sluice.telemetry.options import TelemetryConfig

DEFAULT_CONFIG_TEXT = """\
providers:
  mock: {type: mock, chunk_delay_ms: 25, chunks: 8}
models:
  - {name: mock, provider: mock, model: mock-1}
projects:
  - {name: demo, module: sluice.projects.demo}
"""

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key path and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Per-provider upstream timeouts, in seconds: to connect, between two reads, and (`total`, off unless set)
    for a whole call, from connecting to the reply's last byte, streams and passthrough included (each try of a
    deployment has its own)."""

    connect: float = Field(10.0, gt=0)
    read: float = Field(600.0, gt=0)
    total: float | None = Field(None, gt=0)


class _UpstreamProvider(_Strict):
    base_url: str = Field(pattern=r"^https?://")
    api_key: SecretStr | None = None
    headers: dict[str, str] = {}
    timeout: Timeouts = Timeouts()
    max_connections: int = Field(256, ge=1)
    breaker: BreakerOptions = BreakerOptions()
    """The provider's circuit breaker (on by default; docs/reliability.md)."""
    retries: RetryOptions = RetryOptions()
    """Retries of calls that failed before any reply byte reached the client (docs/reliability.md)."""
    health_check: HealthCheckOptions | None = None
    """Active health checks of its deployments; off unless set (`health_check: true` takes every default)."""


class OpenAIProviderConfig(_UpstreamProvider):
    """OpenAI or any OpenAI-compatible server (OpenRouter, vLLM, Ollama, LM Studio, Gemini)."""

    type: Literal["openai"]
    native_responses: bool | None = None
    """`/v1/responses` calls sent to this provider's own Responses API as they came (true), or translated to chat
    (false); unset: native when the base URL is OpenAI's (api.openai.com)."""


class AzureProviderConfig(_UpstreamProvider):
    """Azure OpenAI, classic deployment URLs: the model's upstream name is the deployment."""

    type: Literal["azure"]
    api_version: str = "2024-10-21"


class AnthropicProviderConfig(_UpstreamProvider):
    """Anthropic's Messages API, translated to and from OpenAI's format."""

    type: Literal["anthropic"]
    base_url: str = Field("https://api.anthropic.com", pattern=r"^https?://")
    api_version: str = "2023-06-01"
    default_max_tokens: int = Field(4096, ge=1)


class MistralProviderConfig(OpenAIProviderConfig):
    """Mistral's OpenAI-compatible API (La Plateforme): an `openai` provider with Mistral's base URL."""

    type: Literal["mistral"]  # type: ignore[assignment]
    base_url: str = Field("https://api.mistral.ai/v1", pattern=r"^https?://")


class GroqProviderConfig(OpenAIProviderConfig):
    """Groq's OpenAI-compatible API: an `openai` provider with Groq's base URL."""

    type: Literal["groq"]  # type: ignore[assignment]
    base_url: str = Field("https://api.groq.com/openai/v1", pattern=r"^https?://")


class DeepSeekProviderConfig(OpenAIProviderConfig):
    """DeepSeek's OpenAI-compatible API: an `openai` provider with DeepSeek's base URL."""

    type: Literal["deepseek"]  # type: ignore[assignment]
    base_url: str = Field("https://api.deepseek.com/v1", pattern=r"^https?://")


class GeminiProviderConfig(_UpstreamProvider):
    """Google Gemini's native API (v1beta generateContent), translated to and from OpenAI's format; the key goes
    in the `x-goog-api-key` header."""

    type: Literal["gemini"]
    base_url: str = Field("https://generativelanguage.googleapis.com", pattern=r"^https?://")


class BedrockProviderConfig(_Strict):
    """AWS Bedrock's Converse API (`/model/{modelId}/converse[-stream]`), translated to and from OpenAI's format;
    every call is signed with AWS Signature Version 4 (service `bedrock`, `region`) from these credentials."""

    type: Literal["bedrock"]
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
    access_key_id: SecretStr
    secret_access_key: SecretStr
    session_token: SecretStr | None = None
    """Temporary credentials' token (sent as `X-Amz-Security-Token`)."""
    base_url: str = Field(pattern=r"^https?://")
    """Default `https://bedrock-runtime.{region}.amazonaws.com`; a VPC endpoint or a test fake replaces it (the
    signature still names `region` and the `bedrock` service)."""
    headers: dict[str, str] = {}
    timeout: Timeouts = Timeouts()
    max_connections: int = Field(256, ge=1)
    breaker: BreakerOptions = BreakerOptions()
    retries: RetryOptions = RetryOptions()
    health_check: HealthCheckOptions | None = None
    """Always off: a probe would have to be signed per request, which health checks do not do."""

    @model_validator(mode="before")
    @classmethod
    def _regional_endpoint(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("base_url") is None and isinstance(data.get("region"), str):
            return {**data, "base_url": f"https://bedrock-runtime.{data['region']}.amazonaws.com"}
        return data

    @field_validator("health_check")
    @classmethod
    def _no_health_check(cls, value: HealthCheckOptions | None) -> HealthCheckOptions | None:
        if value is not None and value.enabled:
            raise ValueError("bedrock providers have no health checks: a probe would need a SigV4 signature")
        return value


class MockProviderConfig(_Strict):
    """The built-in offline provider: model-like replies (docs/mock.md), streaming, usage, optional latency."""

    type: Literal["mock"]
    latency_ms: float = Field(0.0, ge=0)
    chunk_delay_ms: float = Field(0.0, ge=0)
    chunks: int = Field(4, ge=1)


ProviderConfig = Annotated[
    OpenAIProviderConfig | AzureProviderConfig | AnthropicProviderConfig | GeminiProviderConfig
    | MistralProviderConfig | GroqProviderConfig | DeepSeekProviderConfig | BedrockProviderConfig
    | MockProviderConfig,
    Field(discriminator="type"),
]


class DeploymentConfig(_Strict):
    """One place a public model is served: a provider, its name for the model, a weight and limits of its own."""

    provider: str
    model: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)
    """Its share of the traffic under the `weighted` strategy."""
    limits: RateLimit | None = None
    """This deployment's own quota upstream (requests and tokens per minute): the `usage` strategy sends traffic
    elsewhere before it is reached, and no strategy sends it more."""
    health_check: HealthCheckOptions | None = None
    """Replaces its provider's `health_check:` for this deployment (`false`: none); None keeps the provider's."""


class CacheConfig(_Strict):
    """A model's response cache (docs/caching.md): complete answers kept `ttl_seconds`, per API key unless shared."""

    ttl_seconds: float = Field(gt=0)
    shared: bool = False
    """One entry for every key asking the same thing (otherwise each key has its own)."""


class ModelConfig(_Strict):
    """A public model name and where it is served: one deployment (`provider:` + `model:`) or several, with the
    strategy that picks one per request and the models to fall back to when all of them failed."""

    name: str = Field(min_length=1)
    provider: str | None = None
    """The one-deployment shorthand, with `model:`."""
    model: str | None = Field(None, min_length=1)
    deployments: list[DeploymentConfig] = []
    strategy: Strategy = "weighted"
    """round_robin | weighted (smooth, by `weight`; equal weights take turns) | least_busy | latency | usage."""
    fallbacks: list[str] | None = None
    """Other public models, tried in order once every deployment failed (None: `default_fallbacks`)."""
    context_window_fallback: str | None = None
    """A larger model for a request the upstream refuses as too long for this one's context window."""
    aliases: list[str] = []
    limits: RateLimit | None = None
    """Limits on this model across all keys (requests and tokens per minute, concurrent requests)."""
    cache: CacheConfig | None = None
    """Answer identical non-streamed requests from a cache (off unless set)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`provider:` + `model:` stand for one deployment; a model names one or the other form."""
        if not isinstance(data, dict):
            return data
        shorthand = "provider" in data or "model" in data
        if shorthand and data.get("deployments"):
            raise ValueError("give either provider: and model: or deployments:, not both")
        if shorthand:
            if "provider" not in data or "model" not in data:
                raise ValueError("provider: and model: go together (or list deployments:)")
            return {**data, "deployments": [{"provider": data["provider"], "model": data["model"]}]}
        if not data.get("deployments"):
            raise ValueError("a model needs provider: and model:, or deployments:")
        return data


class ServerConfig(_Strict):
    """How the server behaves around its requests."""

    shutdown_grace_seconds: float = Field(30.0, ge=0)
    header_read_timeout_seconds: float = Field(10.0, ge=0.5, le=300)
    """How long a request's headers may take from their first byte (granian's `header_read_timeout`), and a new
    connection to send that byte (serve/idle_reaper.py); past it the connection is closed. Every open connection
    holds one of a worker's `SLUICE_MAX_CONCURRENCY` places, so this bounds how long silent or trickling ones can
    hold them."""
    max_pending_connections: int | None = Field(None, ge=1)
    """How many of a worker's places connections without a request yet (silent, or their headers still arriving,
    so nobody is authenticated on them) may hold at once; past it the oldest are closed (serve/idle_reaper.py).
    Default: a quarter of `SLUICE_MAX_CONCURRENCY`."""


class BasicAuthConfig(_Strict):
    """HTTP Basic credentials (what Prometheus's `basic_auth` scrape option sends)."""

    username: str = Field(min_length=1)
    password: SecretStr


class MetricsConfig(_Strict):
    """The /metrics endpoint: open only when `require_key` is false and no `basic_auth` is set."""

    require_key: bool = True
    """Any API key opens it (the admin key always does)."""
    basic_auth: BasicAuthConfig | None = None
    """Also accept these Basic credentials (and, with `require_key: false`, only these or the admin key)."""


class DemoConfig(_Strict):
    """The `/demo/stream` page: no key needed, served only by a `mock` provider, never a real upstream."""

    enabled: bool = True
    max_prompt_chars: int = Field(500, ge=1, le=10_000)


class ProjectConfig(_Strict):
    """A project plugin to mount at `/projects/{name}`: a module exposing `project` (see sluice.projects.api).

    `models` and `providers`, when given, replace what the plugin declares it may call.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    module: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    models: list[str] | None = None
    providers: list[str] | None = None


class StaticKeyConfig(_Strict):
    """An API key accepted besides SLUICE_API_KEYS, optionally limited in scope, rate and spend."""

    key: SecretStr
    name: str | None = None
    models: list[str] | None = None
    """Public model names this key may use; None means every model."""
    projects: list[str] | None = None
    """Projects this key may call (`/projects/{name}/…`); None means every project."""
    providers: list[str] | None = None
    """Providers this key may reach, through models, `/provider/{name}/…` or projects; None means every one."""
    services: list[str] | None = None
    """Services (`services:`) this key may reach through the service routes; None means every one."""
    projects_only: bool = False
    """True: only `/projects/…` (the projects' own calls still obey `models` and `providers`); `/v1` lists and
    serves no model, `/provider/…` is 403."""
    admin: bool = False
    """May use the /admin API."""
    limits: RateLimit | None = None
    """None means `limits.default_key`."""
    budget: Budget | None = None
    """None means `limits.default_budget`."""
    mcp: McpScope | None = None
    """Upstream MCP tools this key may use (allow/deny globs on `{server}__{tool}`); None: the gateway's own tools
    only (docs/mcp.md)."""


class SluiceConfig(_Strict):
    """The whole sluice.yaml."""

    providers: dict[str, ProviderConfig]
    models: list[ModelConfig] = []
    default_fallbacks: list[str] = []
    """Fallback models for every model that names none of its own."""
    services: dict[str, ServiceConfig] = {}
    """Plain HTTP and WebSocket services behind the gateway (docs/services.md)."""
    routes: list[RouteConfig] = []
    """The rules that send requests to `services` (most specific first: services/rules.py)."""
    services_health_path: str | None = Field(None, pattern=r"^/[A-Za-z0-9_./-]*$")
    """An extra path for `GET /health/services` (brief 003's `/api/health`); it answers before any route."""
    limits: Limits = Limits()
    server: ServerConfig = ServerConfig()
    cors: CorsConfig | None = None
    """Cross-origin calls from browsers (docs/cors.md); off unless set. A route's own `cors:` replaces it there."""
    metrics: MetricsConfig = MetricsConfig()
    demo: DemoConfig = DemoConfig()
    projects: list[ProjectConfig] = []
    discover_projects: bool = True
    """Also mount every installed `sluice.projects` entry point (config entries win on a name clash)."""
    static_keys: list[StaticKeyConfig] = []
    keys: KeysConfig = KeysConfig()
    """Managed API keys (docs/keys.md)."""
    jwt: JwtConfig | None = None
    """JWTs accepted in place of an API key: issuer, audience, algorithms, the issuer's keys (docs/keys.md)."""
    request_log: RequestLogConfig = Field(default_factory=RequestLogConfig)
    prices: dict[str, Price] = {}
    """USD per million tokens by public or upstream model name, over the built-in defaults (sluice.pricing)."""
    telemetry: TelemetryConfig = TelemetryConfig()
    prompts: list[PromptConfig] = []
    """Prompt templates (sluice.prompts) a chat request can name instead of giving messages."""
    prompts_dir: str | None = None
    """A directory of YAML template files, relative to the config file."""
    mcp_servers: McpServers = {}
    """Upstream MCP servers, by name, reached at `/mcp/{name}` and aggregated at `/mcp` (docs/mcp.md)."""

    @field_validator("request_log", mode="before")
    @classmethod
    def _prices_moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prices" in data:
            raise ValueError("prices: moved to the top-level `prices:` section (see docs/budgets.md)")
        return data

    @model_validator(mode="after")
    def _check_references(self) -> SluiceConfig:
        seen: dict[str, str] = {}
        for index, model in enumerate(self.models):
            for number, deployment in enumerate(model.deployments):
                where = f"models[{index}].provider" if model.provider is not None else \
                    f"models[{index}].deployments[{number}].provider"
                self._check_providers(where, [deployment.provider])
                if deployment.health_check is not None and \
                        isinstance(self.providers[deployment.provider], MockProviderConfig):
                    raise ValueError(f"models[{index}].deployments[{number}].health_check: provider "
                                     f"{deployment.provider!r} is the built-in mock, which has no upstream to check")
                if deployment.health_check is not None and deployment.health_check.enabled and \
                        isinstance(self.providers[deployment.provider], BedrockProviderConfig):
                    raise ValueError(f"models[{index}].deployments[{number}].health_check: provider "
                                     f"{deployment.provider!r} is bedrock, whose calls need a SigV4 signature "
                                     "that health checks do not make")
            for public in (model.name, *model.aliases):
                if public in seen:
                    raise ValueError(f"models[{index}]: name {public!r} is already used by {seen[public]!r}")
                seen[public] = model.name
        self._check_fallbacks(set(seen))
        self._check_projects_and_keys(set(seen))
        self._check_routes()
        return self

    def _check_routes(self) -> None:
        from sluice.services.rules import shadowed_prefix

        for index, route in enumerate(self.routes):
            where = f"routes[{index}]"
            for name in route.services:
                if name not in self.services:
                    known = ", ".join(sorted(self.services)) or "none"
                    raise ValueError(f"{where}: unknown service {name!r} (known: {known})")
            if route.auth == "jwt" and self.jwt is None:
                raise ValueError(f"{where}.auth: jwt needs a jwt: section (issuer, audience, keys: docs/keys.md)")
            shadowed = shadowed_prefix(route)
            if shadowed is not None:
                raise ValueError(f"{where}.path: {route.path or route.path_regex!r} would shadow the gateway's own "
                                 f"{shadowed} routes")
            if route.path_regex is not None:
                try:
                    re.compile(route.path_regex)
                except re.error as exc:
                    raise ValueError(f"{where}.path_regex: not a regular expression: {exc}") from None

    def _check_fallbacks(self, models: set[str]) -> None:
        for where, names in [("default_fallbacks", self.default_fallbacks)] + [
                (f"models[{index}]", [*(model.fallbacks or []), *filter(None, [model.context_window_fallback])])
                for index, model in enumerate(self.models)]:
            for name in names:
                if name not in models:
                    raise ValueError(f"{where}: fallback {name!r} is not a model of this config")

    def _check_projects_and_keys(self, models: set[str]) -> None:
        names = [project.name for project in self.projects]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"projects[{index}].name: {name!r} is listed twice")
        for index, project in enumerate(self.projects):
            self._check_providers(f"projects[{index}].providers", project.providers)
            for name in project.models or []:
                if name not in models:
                    raise ValueError(f"projects[{index}].models: unknown model {name!r}")
        for index, key in enumerate(self.static_keys):
            self._check_providers(f"static_keys[{index}].providers", key.providers)
            for name in key.models or []:
                if name not in models:
                    raise ValueError(f"static_keys[{index}].models: unknown model {name!r}")
            for name in key.services or []:
                if name not in self.services:
                    raise ValueError(f"static_keys[{index}].services: unknown service {name!r}")

    def _check_providers(self, where: str, names: list[str] | None) -> None:
        for name in names or []:
            if name not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none"
                raise ValueError(f"{where}: unknown provider {name!r} (known: {known})")


def interpolate(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace `${VAR}` and `${VAR:-default}` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {key: interpolate(item, env, _join(path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, str):
        return _ENV_REFERENCE.sub(lambda match: _lookup(match, path, env), value)
    return value


def _lookup(match: re.Match[str], path: str, env: dict[str, str]) -> str:
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    raise ConfigError(f"{path}: environment variable {name} is not set (use ${{{name}:-}} to make it optional)")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _format_location(location: tuple[int | str, ...]) -> str:
    if len(location) > 2 and location[0] == "providers":
        location = location[:2] + location[3:]  # drop the discriminator tag pydantic inserts for the union
    text = ""
    for part in location:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, part)
    return text


def parse_config(text: str, source: str, env: dict[str, str] | None = None) -> SluiceConfig:
    """Parse and validate YAML text; `source` names it in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with 'providers' and 'models'")
    try:
        return SluiceConfig.model_validate(interpolate(raw, dict(os.environ) if env is None else env))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = _format_location(tuple(error["loc"]))
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: str | Path | None) -> SluiceConfig:
    """Load the config file at `path`, or the embedded defaults (mock provider only) when `path` is None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG_TEXT, "<embedded defaults>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the config file: {exc.strerror}") from None
    config = parse_config(text, str(file))
    if config.prompts_dir is not None and not Path(config.prompts_dir).is_absolute():
        config = config.model_copy(update={"prompts_dir": str(file.parent / config.prompts_dir)})
    return config
