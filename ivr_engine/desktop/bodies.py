"""Request bodies of the desktop: strict, bounded pydantic models (unknown keys refused)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from ivr_engine.desktop.directory import AGENT_ID_PATTERN

AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Token = Annotated[str, StringConstraints(min_length=16, max_length=512)]
Action = Literal["available", "pause", "finish_wrap_up", "log_out"]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class LoginBody(_Body):
    """``{"agent_id", "password"}`` or ``{"token"}``."""

    agent_id: AgentId | None = None
    password: Password | None = None
    token: Token | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        with_password = self.agent_id is not None and self.password is not None
        if self.token is not None and self.agent_id is None and self.password is None:
            return self
        if with_password and self.token is None:
            return self
        raise ValueError("send agent_id and password, or token alone")


class StateBody(_Body):
    """A state button: available, pause, finish_wrap_up (wrap-up → available), log_out."""

    action: Action
