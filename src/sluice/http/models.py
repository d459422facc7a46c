"""`GET /v1/models` and `GET /v1/models/{id}`: the models the caller may use."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from sluice.errors import NotFound
from sluice.gateway import Gateway
from sluice.http.auth import CurrentGateway, CurrentPrincipal
from sluice.http.limits import AddressLimit, KeyLimit
from sluice.keys.principal import Principal

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[AddressLimit, KeyLimit])


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def visible_models(gateway: Gateway, principal: Principal) -> list[Model]:
    return [
        Model(id=deployment.name, created=gateway.started_at, owned_by=deployment.provider.name)
        for deployment in gateway.routes.public
        if principal.may_use(deployment.name)
    ]


@router.get("/models", response_model=ModelList)
async def list_models(gateway: CurrentGateway, principal: CurrentPrincipal) -> ModelList:
    return ModelList(data=visible_models(gateway, principal))


@router.get("/models/{model_id:path}", response_model=Model)
async def get_model(model_id: str, gateway: CurrentGateway, principal: CurrentPrincipal) -> Model:
    for model in visible_models(gateway, principal):
        if model.id == model_id:
            return model
    raise NotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model",
                   code="model_not_found")
