"""`GET /v1/models` and `GET /v1/models/{id}`: the models the caller may use."""

from __future__ import annotations

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
    return [
        {"id": deployment.name, "object": "model", "created": gateway.started_at,
         "owned_by": deployment.provider.name}
        for deployment in gateway.routes.public
        if principal.may_use(deployment.name)
    ]


async def list_models(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None
                      ) -> bytes:
    assert principal is not None
    return orjson.dumps({"object": "list", "data": visible_models(gateway, principal)})


async def get_model(gateway: Gateway, scope: Scope, headers: dict[bytes, bytes], principal: Principal | None
                    ) -> bytes:
    assert principal is not None
    model_id = scope["path"][len(MODEL_PREFIX):]
    for model in visible_models(gateway, principal):
        if model["id"] == model_id:
            return orjson.dumps(model)
    raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model",
                   code="model_not_found")
