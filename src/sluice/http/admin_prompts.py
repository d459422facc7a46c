"""`/admin/prompts`: list the prompt templates in effect and add new versions (kept in the database)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import GatewayError, InvalidRequest, NotFound
from sluice.gateway import Gateway
from sluice.http.admin_audit import record
from sluice.http.admin_auth import AdminAccess, CurrentAdmin
from sluice.http.auth import CurrentGateway
from sluice.http.limits import AddressLimit
from sluice.http.openapi import error_responses
from sluice.prompts import NAME_PATTERN, PromptConfig, PromptMessage, Template

if TYPE_CHECKING:
    from sluice.prompts_store import PromptStore

MAX_VERSION = 2**31 - 1
"""The largest version the `prompt_templates` table holds (a 32-bit INTEGER on PostgreSQL)."""
router = APIRouter(prefix="/admin/prompts", tags=["admin"], dependencies=[AddressLimit, AdminAccess])


class NewPrompt(BaseModel):
    """A template version to add; without `version` it becomes the name's next version."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(None, ge=1, le=MAX_VERSION)
    messages: list[PromptMessage] = Field(min_length=1)
    description: str | None = None
    model: str | None = None


class PromptList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]


def describe(gateway: Gateway, template: Template) -> dict[str, Any]:
    source = "config" if (template.name, template.version) in gateway.prompts.configured else "api"
    return {"object": "prompt", **template.as_config(), "variables": sorted(template.variables), "source": source}


def _store(gateway: Gateway) -> PromptStore:
    if gateway.prompt_store is None:
        raise GatewayError("Adding prompt templates needs the database: enable request_log (and its database) in "
                           "the config.", status=404, type="invalid_request_error", code="prompt_store_disabled")
    return gateway.prompt_store


@router.get("", response_model=PromptList, summary="Every prompt template version in effect")
async def list_prompts(gateway: CurrentGateway) -> PromptList:
    return PromptList(data=[describe(gateway, template) for template in gateway.prompts])


@router.get("/{name}", response_model=PromptList, summary="The versions of one prompt template")
async def prompt_versions(name: str, gateway: CurrentGateway) -> PromptList:
    versions = [describe(gateway, template) for template in gateway.prompts if template.name == name]
    if not versions:
        raise NotFound(f"The prompt '{name}' does not exist.", code="prompt_not_found")
    return PromptList(data=versions)


@router.post("", status_code=201, summary="Add a prompt template version (versions are immutable)",
             responses=error_responses(e404="No prompt store (the request log's database is off)",
                                       e409="That version exists already"))
async def add_prompt(body: NewPrompt, gateway: CurrentGateway, admin: CurrentAdmin) -> dict[str, Any]:
    store = _store(gateway)
    version = body.version or gateway.prompts.next_version(body.name)
    if version > MAX_VERSION:
        raise InvalidRequest(f"Prompt '{body.name}' has version {MAX_VERSION}, the last one; give it another name.",
                             param="version")
    config = PromptConfig(name=body.name, version=version, messages=body.messages, description=body.description,
                          model=body.model)
    added = await store.add(config)
    await record(gateway, admin, "prompt.add", f"{added.name}@{added.version}",
                 {"version": added.version, "model": body.model, "description": body.description,
                  "messages": len(body.messages)})
    return describe(gateway, added)
