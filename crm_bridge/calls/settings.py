"""Typed settings of the call-event bridge, validated once at start-up.

``roles``: ``reader`` (switch → outbox → bus: one per Asterisk or FreeSWITCH, needs
``ami_url`` (Asterisk) or ``esl_url`` (FreeSWITCH), never both, and ``outbox_path``) and
``consumer`` (bus → timeline: as many as there are bus partitions, needs ``database_url``).
Both in one process is the default; the in-process bus (``bus_url`` None) only works that
way. ``from_engine`` derives them from the engine's settings (same AMI, database, spool
directory and region).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from crm_bridge.calls.outbox import OutboxSync
from crm_bridge.calls.state import NormaliserConfig
from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.settings import (
    ESL_URL_FORM,
    AmiUrl,
    DatabaseUrlText,
    EslUrl,
    RegionCode,
    Settings,
    parse_esl_url,
    problem,
)

__all__ = ["ESL_URL_FORM", "BridgeSettings", "Role", "parse_esl_url"]

Role = Literal["reader", "consumer"]
_NAME = r"^[A-Za-z0-9_.\-]{1,100}$"
_SOURCE = r"^[A-Za-z0-9_.\-]{1,40}$"


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:100].replace(" ", "-")


class BridgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: frozenset[Role] = frozenset({"reader", "consumer"})
    ami_url: AmiUrl | None = Field(None, description="ami://USER:SECRET@HOST:5038 (reader)")
    ami_ping_interval_s: float = Field(10.0, gt=0, le=300)
    ami_events: str = Field("system,call,user", description="Login Events: the classes read")
    ami_server_filter: bool = Field(
        True,
        description="ask Asterisk (Filter action, needs write=system) to send only the "
        "events the bridge reads",
    )
    esl_url: EslUrl | None = Field(None, description=f"{ESL_URL_FORM} (reader, FreeSWITCH)")
    esl_source: str = Field(
        "freeswitch", pattern=_SOURCE, description="names the switch in event ids"
    )
    esl_inbound_contexts: tuple[str, ...] = ("public",)
    database_url: DatabaseUrlText | None = Field(None, description="the timeline (consumer)")
    bus_url: str | None = Field(None, description="redis://HOST:6379/0; None: in-process")
    bus_partitions: int = Field(8, ge=1, le=1024)
    stream: str = Field("call-events", pattern=_NAME, description="the bus stream's name")
    group: str = Field("timeline", pattern=_NAME, description="the consumer group")
    consumer_name: str = Field(
        default_factory=_default_consumer,
        pattern=_NAME,
        description="this consumer in the group (default: host-pid)",
    )
    outbox_path: Path = Field(
        Path("data/spool/call-outbox.db"), description="the reader's durable outbox (SQLite)"
    )
    outbox_sync: OutboxSync = Field(
        "full",
        description="full: fsync every commit (survives a power cut); normal: survives the "
        "bridge being killed, not a power cut",
    )
    source: str = Field("asterisk", pattern=_SOURCE, description="names the switch in event ids")
    inbound_contexts: tuple[str, ...] = ("from-trunk",)
    adopt_contexts: tuple[str, ...] = ("from-trunk", "ivr-*")
    default_region: RegionCode = Field(
        "US", description="region of caller IDs without a country code"
    )
    caller_id_country_code_without_plus: CountryCodeWithoutPlus = Field(
        "auto",
        description="caller IDs starting with default_region's country code without + "
        "(auto, always, never: the engine's setting)",
    )
    publish_window_ms: int = Field(
        10, ge=0, le=1000, description="the publisher gathers outbox rows this long"
    )
    publish_batch: int = Field(1000, ge=1, le=10_000, description="rows per publish, at most")
    consume_batch: int = Field(500, ge=1, le=10_000, description="events per bus read, at most")
    consume_linger_ms: int = Field(
        20,
        ge=0,
        le=1000,
        description="after a small batch, read again this long after the last read",
    )
    db_retry_cap_s: float = Field(5.0, gt=0, le=300)
    shutdown_grace_s: float = Field(5.0, ge=0, le=300)
    webhooks_file: Path | None = Field(None, description="subscriptions; None: no webhooks")
    webhooks_store: Path = Field(
        Path("data/spool/bridge-webhooks.db"),
        description="this bridge's webhook delivery store (not the engine's file)",
    )

    @model_validator(mode="after")
    def _roles_have_what_they_need(self) -> BridgeSettings:
        if not self.roles:
            raise ValueError("roles: choose reader, consumer or both")
        if "reader" in self.roles and self.ami_url is None and self.esl_url is None:
            raise ValueError(
                "the reader role needs ami_url (Asterisk) or esl_url (FreeSWITCH): "
                "`ivr-engine bridge` takes them from IVR_ENGINE_AMI_URL or IVR_ENGINE_ESL_URL "
                "(ami_url or esl_url in its settings file) or --esl-url; "
                "`python -m crm_bridge.calls` from --ami-url or --esl-url"
            )
        if self.ami_url is not None and self.esl_url is not None:
            raise ValueError(
                "ami_url and esl_url are both set: one reader reads one switch; "
                "run one bridge (with its own outbox_path) per switch"
            )
        if "consumer" in self.roles and self.database_url is None:
            raise ValueError("database_url is required for the consumer role")
        in_process = self.bus_url in (None, "memory://")
        if in_process and self.roles != {"reader", "consumer"}:
            raise ValueError("the in-process bus needs both roles in one process: set bus_url")
        return self

    @property
    def in_process_bus(self) -> bool:
        return self.bus_url in (None, "memory://")

    def normaliser(self) -> NormaliserConfig:
        """The normaliser of the switch read: FreeSWITCH's with ``esl_url``, else Asterisk's."""
        if self.esl_url is not None:
            return NormaliserConfig(
                source=self.esl_source,
                inbound_contexts=self.esl_inbound_contexts,
                default_region=self.default_region,
                country_code_without_plus=self.caller_id_country_code_without_plus,
            )
        return NormaliserConfig(
            source=self.source,
            inbound_contexts=self.inbound_contexts,
            adopt_contexts=self.adopt_contexts,
            default_region=self.default_region,
            country_code_without_plus=self.caller_id_country_code_without_plus,
        )

    @classmethod
    def build(cls, **values: Any) -> BridgeSettings:
        """Validate; ``ConfigError`` names each bad key and what is wrong."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {problem(e)}" if e["loc"] else problem(e)
                for e in exc.errors()  # no loc: a rule across settings, whose words name them
            )
            raise ConfigError(f"call bridge settings: {problems}") from None  # it quotes input

    @classmethod
    def from_engine(cls, settings: Settings, **overrides: Any) -> BridgeSettings:
        """The engine's AMI or ESL URL, database, spool directory and region; ``overrides``
        win. An ``esl_url`` (the engine's setting or an override) reads FreeSWITCH instead of
        the engine's ``ami_url``, unless ``ami_url`` is overridden too (refused: both)."""
        values: dict[str, Any] = {
            "ami_url": settings.ami_url,
            "esl_url": settings.esl_url,
            "database_url": settings.database_url,
            "outbox_path": settings.spool_dir / "call-outbox.db",
            "default_region": settings.default_region,
            "caller_id_country_code_without_plus": settings.caller_id_country_code_without_plus,
            "webhooks_file": settings.webhooks_file,
            "webhooks_store": settings.spool_dir / "bridge-webhooks.db",
        }
        values.update(overrides)
        if values["esl_url"] is not None and "ami_url" not in overrides:
            values["ami_url"] = None
        return cls.build(**values)
