"""The `telemetry:` section of sluice.yaml: what traces show. Where they go is the environment's choice
(`PHOENIX_COLLECTOR_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`; see settings.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class TelemetryConfig(BaseModel):
    """Traces: the Phoenix project, which request headers name the session and the user, what is hidden."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field("sluice", min_length=1)
    """The Phoenix project the spans land in (resource attribute `openinference.project.name`)."""
    session_header: str | None = "x-session-id"
    """Request header whose value becomes `session.id` on the spans; null to ignore."""
    user_header: str | None = "x-user-id"
    """Request header whose value becomes `user.id`."""
    hide_inputs: bool = False
    """Leave prompts out of spans (`input.value` and `llm.input_messages.*`), like OPENINFERENCE_HIDE_INPUTS."""
    hide_outputs: bool = False
    """Leave completions out of spans (`output.value` and `llm.output_messages.*`)."""
    exporter_priority: Literal["idle"] | Annotated[int, Field(ge=0, le=19)] = "idle"
    """CPU priority of the span exporter process: `idle` (SCHED_IDLE: it runs on the CPU time requests leave and
    never delays one; on a core kept saturated its pipe fills and spans are dropped, counted) or a `nice` value."""
    exporter_nice: int | None = Field(None, ge=0, le=19)
    """Deprecated: a `nice` value for the exporter; when set, it wins over `exporter_priority`."""
