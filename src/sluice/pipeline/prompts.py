"""A chat request's `prompt` (a template reference) rendered into its messages, noted on the exchange."""

from __future__ import annotations

from sluice.exchange import Exchange
from sluice.prompts import PromptRegistry
from sluice.providers.base import JSONObject


def apply_prompt(prompts: PromptRegistry, body: JSONObject, exchange: Exchange) -> None:
    """Replace the body's `prompt` with the rendered messages, put before any given."""
    reference = body.pop("prompt")
    if reference is None:
        return
    rendered = prompts.render(reference)
    body["messages"] = rendered.messages + (body.get("messages") or [])
    template = rendered.template
    exchange.prompt_name, exchange.prompt_version = template.name, template.version
    exchange.prompt_template, exchange.prompt_variables = template.template_json, rendered.variables
