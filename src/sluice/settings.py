"""Process settings from the environment and `.env`: the only place that reads env vars."""

from __future__ import annotations

from typing import Annotated

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """What the process needs before the config file is read."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", env_file=".env", extra="ignore")

    config: str | None = None
    api_keys: Annotated[list[SecretStr], NoDecode] = []
    allow_no_auth: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    build: str = "dev"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",")]
        return value

    @field_validator("api_keys")
    @classmethod
    def _no_empty_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(not key.get_secret_value() for key in value):
            raise ValueError("SLUICE_API_KEYS contains an empty key")
        return value
