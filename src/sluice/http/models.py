"""`GET /v1/models` and `GET /v1/models/{id}`: the models the caller may use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel

from sluice.errors import NotFound
from sluice.gateway import Gateway
from sluice.http.asgi import Scope
from sluice.keys.principal import Principal

MODEL_PREFIX = "/v1/models/"


class Model(BaseModel):
    """One entry of the list (its schema in /docs)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """The /v1/models body (its schema in /docs)."""

    object: Literal["list"] = "list"
    data: list[Model]


def visible_models(gateway: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """Exactly the models a chat call with this key is let through to: its `models` and `providers` scopes both
    (a projects-only key: none). A key limited to some models also sees the aliases it names."""
    providers = principal.providers
    visible: list[dict[str, Any]] = []
    for model in gateway.config.models:
        if providers is not None and model.provider not in providers:
            continue
        names = (model.name,) if principal.models is None else (model.name, *model.aliases)
        visible.extend({"id": name, "object": "model", "created": gateway.started_at, "owned_by": model.provider}
                       for name in names if principal.may_use(name))
    return visible


def anthropic_model(model: dict[str, Any]) -> dict[str, Any]:
    """A model as Anthropic's Models API lists it (asked for with an `anthropic-version` header)."""
    created = datetime.fromtimestamp(model["created"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "model", "id": model["id"], "display_name": model["id"], "created_at": created}


async def list_models(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None
                      ) -> bytes:
    assert principal is not None
    visible = visible_models(gateway, principal)
    if b"anthropic-version" in headers:
        data = [anthropic_model(model) for model in visible]
        return orjson.dumps({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None})
    return orjson.dumps({"object": "list", "data": visible})


async def get_model(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None
                    ) -> bytes:
    assert principal is not None
    model_id = scope["path"][len(MODEL_PREFIX):]
    for model in visible_models(gateway, principal):
        if model["id"] == model_id:
            return orjson.dumps(anthropic_model(model) if b"anthropic-version" in headers else model)
    raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model",
                   code="model_not_found")
