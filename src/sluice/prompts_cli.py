"""`sluice prompts push|pull`: the prompt templates in Phoenix's prompt management (REST API `/v1/prompts`).

`push` uploads each configured template version that Phoenix does not hold yet as a new Phoenix prompt version
(MUSTACHE format, so `{{variable}}` means the same there), marked with `metadata.sluice_version` and tagged
`v<version>`. `pull` reads every version back and writes `prompts:` YAML usable in sluice.yaml or `prompts_dir`;
versions made in Phoenix (no `sluice_version`) are numbered after the newest one before them.
Only the standard library is used (urllib), imported when a command runs, so `sluice serve` stays small.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sluice.prompts import PromptConfig, PromptMessage, PromptRegistry, Template, dump_prompts

COMMANDS = ("prompts",)
DEFAULT_MODEL = "gpt-4o-mini"
_ROLES = {"system": "system", "developer": "developer", "user": "user", "assistant": "assistant", "ai": "assistant",
          "model": "assistant"}


class PhoenixError(Exception):
    """Phoenix answered with an error (`status`), or could not be reached (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def add_commands(commands: Any, config_option: Any) -> None:
    """Add `prompts push` and `prompts pull` to the `sluice` parser's subcommands."""
    prompts = commands.add_parser("prompts", help="push prompt templates to Phoenix or pull them from it")
    actions = prompts.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", help="upload the configured templates to Phoenix",
                              description="Upload every configured template version Phoenix does not hold yet.")
    pull = actions.add_parser("pull", help="download templates from Phoenix as prompts YAML",
                              description="Write Phoenix's prompts as `prompts:` YAML (a prompts_dir file).")
    for parser in (push, pull):
        config_option(parser)
        parser.add_argument("--phoenix", metavar="URL",
                            help="Phoenix base URL (default PHOENIX_COLLECTOR_ENDPOINT)")
        parser.add_argument("--name", action="append", metavar="NAME", help="only this prompt (repeatable)")
    pull.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")


def run(args: argparse.Namespace, phoenix_endpoint: str | None, registry: PromptRegistry) -> int:
    base = base_url(args.phoenix or phoenix_endpoint)
    if base is None:
        print("sluice: no Phoenix URL: pass --phoenix URL or set PHOENIX_COLLECTOR_ENDPOINT", file=sys.stderr)
        return 2
    client = PhoenixPrompts(base, os.environ.get("PHOENIX_API_KEY"))
    names = set(args.name) if args.name else None
    try:
        if args.action == "push":
            templates = [template for template in registry if names is None or template.name in names]
            for template, created in client.push(templates):
                print(f"{template.name} v{template.version}: {'pushed' if created else 'already in Phoenix'}")
            return 0
        text = dump_prompts(client.pull(names))
    except PhoenixError as exc:
        print(f"sluice: {exc}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def base_url(endpoint: str | None) -> str | None:
    """Phoenix's base URL from a collector endpoint (which may be the OTLP traces URL)."""
    if not endpoint:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint.removesuffix("/v1/traces")


class PhoenixPrompts:
    """The few calls of Phoenix's prompt REST API that push and pull need."""

    def __init__(self, base: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base = base
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout

    def push(self, templates: list[Template]) -> list[tuple[Template, bool]]:
        """Create the versions Phoenix lacks, oldest first; (template, whether it was created) for each."""
        done: list[tuple[Template, bool]] = []
        known: dict[str, set[int]] = {}
        for template in sorted(templates, key=lambda item: (item.name, item.version)):
            if template.name not in known:
                known[template.name] = {number for number, _ in self._numbered_versions(template.name)}
            if template.version in known[template.name]:
                done.append((template, False))
                continue
            prompt: dict[str, Any] = {"name": template.name}
            if template.description:
                prompt["description"] = template.description
            created = self._call("POST", "/v1/prompts", {"prompt": prompt, "version": version_data(template)})
            version_id = created["data"]["id"]
            self._call("POST", f"/v1/prompt_versions/{quote(version_id)}/tags", {"name": f"v{template.version}"})
            known[template.name].add(template.version)
            done.append((template, True))
        return done

    def pull(self, names: set[str] | None = None) -> list[Template]:
        """Every version of every prompt (or of `names`) as Sluice templates."""
        found: list[Template] = []
        for name in sorted(names if names is not None else self._prompt_names()):
            for number, version in self._numbered_versions(name):
                messages = [PromptMessage.model_validate({"role": role, "content": content})
                            for role, content in _messages(version)]
                found.append(Template.of(PromptConfig(
                    name=name, version=number, messages=messages, description=version.get("description"),
                    model=version.get("model_name"))))
        return found

    def _prompt_names(self) -> list[str]:
        return [prompt["name"] for prompt in self._paged("/v1/prompts")]

    def _numbered_versions(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        """The prompt's versions, oldest first, with their Sluice version numbers; [] for an unknown prompt."""
        try:
            versions = self._paged(f"/v1/prompts/{quote(name)}/versions")
        except PhoenixError as exc:
            if exc.status == 404:
                return []
            raise
        numbered: list[tuple[int, dict[str, Any]]] = []
        last = 0
        for version in reversed(versions):  # Phoenix lists the newest first
            marked = (version.get("metadata") or {}).get("sluice_version")
            number = marked if isinstance(marked, int) and marked > last else last + 1
            numbered.append((number, version))
            last = number
        return numbered

    def _paged(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = "?limit=1000" + (f"&cursor={quote(cursor)}" if cursor else "")
            page = self._call("GET", path + query)
            items.extend(page.get("data") or [])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise PhoenixError(f"Phoenix answered {exc.code} to {method} {path}: {detail}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise PhoenixError(f"cannot reach Phoenix at {self.base}: {exc}") from None
        return json.loads(raw) if raw else {}


def version_data(template: Template) -> dict[str, Any]:
    """A Phoenix `PromptVersionData` for a Sluice template version."""
    data: dict[str, Any] = {
        "model_provider": "OPENAI",
        "model_name": template.model or DEFAULT_MODEL,
        "template": {"type": "chat", "messages": [{"role": role, "content": content}
                                                   for role, content in template.messages]},
        "template_type": "CHAT",
        "template_format": "MUSTACHE",
        "invocation_parameters": {"type": "openai", "openai": {}},
        "metadata": {"sluice_version": template.version},
    }
    if template.description:
        data["description"] = template.description
    return data


def _messages(version: dict[str, Any]) -> list[tuple[str, str]]:
    template = version.get("template") or {}
    if template.get("type") != "chat":
        return [("user", str(template.get("template", "")))]
    messages: list[tuple[str, str]] = []
    for message in template.get("messages") or []:
        role = _ROLES.get(str(message.get("role", "")).lower())
        if role is None:
            continue  # tool messages have no place in a Sluice template
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        messages.append((role, str(content or "")))
    return messages
