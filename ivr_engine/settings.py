"""Typed engine settings: defaults < config file < environment < command line.

Validated once at start-up; an error names where the bad value came from and the fix.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import SplitResult, unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ivr_engine.domain.errors import ConfigError
from ivr_engine.domain.models import CountryCodeWithoutPlus
from ivr_engine.telephony.peers import parse_networks
from ivr_engine.timeline.errors import UnsupportedDatabaseUrl
from ivr_engine.timeline.urls import RAW_IN_PASSWORD, parse_database_url, redact
from ivr_engine.yaml_load import describe_yaml_error, load_yaml

ENV_PREFIX = "IVR_ENGINE_"
CONFIG_ENV = "IVR_ENGINE_CONFIG"  # the settings file's path (the CLI's --config), not a setting
MIN_ADMIN_TOKEN = 32
MAX_TOKEN = 512
MAX_API_TOKENS = 20
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)

# Switch URLs, checked where any settings model (the engine's, the bridge's) takes them.
AmiUrl = Annotated[str, AfterValidator(lambda url: _parsed(url, parse_ami_url))]
EslUrl = Annotated[str, AfterValidator(lambda url: _parsed(url, parse_esl_url))]
# The timeline, Redis and the caller-ID region: refused when the settings load, not at the
# first call (a region phonenumbers does not know identified nobody, silently).
DatabaseUrlText = Annotated[str, AfterValidator(lambda url: _parsed(url, check_database_url))]
RedisUrl = Annotated[str, AfterValidator(lambda url: _parsed(url, check_redis_url))]
RegionCode = Annotated[str, AfterValidator(lambda code: _parsed(code, check_region))]


def _parsed(url: str, parse: Callable[[str], object]) -> str:
    parse(url)  # ValueError saying what is wrong
    return url


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: DatabaseUrlText = Field(
        "sqlite:///data/ivr-engine.db",
        description="sqlite:///FILE (embedded default) or postgresql://USER@HOST:PORT/DB",
    )
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=0, le=65535)
    agi_backlog: int = Field(1024, ge=16, le=65535)
    # Engine worker processes sharing the call ports (SO_REUSEPORT) under a supervisor;
    # 1: one process, no supervisor (ivr_engine/workers.py says what runs where).
    workers: int = Field(1, ge=1, le=64, description="engine processes taking calls")
    # FastAGI and ESL authenticate nobody: the PBXs allowed to connect (IPs or networks).
    pbx_allowlist: list[str] = Field(
        default_factory=list,
        description="addresses/networks allowed on agi_port and esl_port; empty: any; "
        "env: comma-separated",
    )
    allow_any_pbx: bool = Field(
        False,
        description="true: take calls from any host on a non-loopback agi_host/esl_host "
        "without pbx_allowlist (a firewall in front lets only the PBXs through)",
    )
    agi_header_timeout_s: float = Field(5.0, gt=0, le=60)
    agi_command_timeout_s: float = Field(120.0, gt=0, le=3600)
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="on SIGTERM, calls in progress may finish for this long; then each is "
        "ended with IVR_OUTCOME=failed (the dialplan's static menu)",
    )
    loop_watchdog_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="an engine process whose event loop has not run for this long logs "
        "where it is stuck and exits (code 70) so its calls' sockets close (the dialplan's "
        "static menu) and it is restarted; 0: off; at least 1 otherwise",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    http_body_timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a JSON body of the HTTP API (the desktop too) must arrive within this "
        "plus 1 s per KiB received, else 408 body_timeout (a stalled, dripping or broken body "
        "no longer holds its handler)",
    )
    # FreeSWITCH: the outbound Event Socket server (socket app); None: not started.
    esl_host: str = "127.0.0.1"
    esl_port: int | None = Field(None, ge=0, le=65535, description="e.g. 8084; None: off")
    menus_dir: Path = Path("config/menus")
    sounds_dir: Path = Field(Path("prompts/en"), description="checked at start-up for prompts")
    check_prompts: bool = True
    default_region: RegionCode = Field(
        "US", description="phonenumbers region of caller IDs without a country code"
    )
    caller_id_country_code_without_plus: CountryCodeWithoutPlus = Field(
        "auto",
        description="digits starting with default_region's country code, without + or 00 "
        "(4915112345678 in DE): auto: +digits in a region with a national prefix (0), else "
        "national; always: +digits; never: national (identity.normalize_phone)",
    )
    use_withheld_caller_id: bool = Field(
        False, description="identify callers who withheld their number (presentation restricted)"
    )
    decision_deadline_ms: int = Field(150, ge=10, le=5000)
    # Speech menus ("say or press", a menu's speech: enabled): unused without one.
    speech_recordings_dir: Path = Field(
        Path("data/speech"),
        description="where the engine reads (then deletes) what the switch recorded of a "
        "caller; the switch must be able to write there",
    )
    speech_switch_dir: str | None = Field(
        None,
        pattern=r"^/[A-Za-z0-9_./-]{0,200}$",
        description="the same directory as Asterisk names it (a chroot, a shared mount); "
        "None: the engine's absolute path",
    )
    speech_workers: int = Field(1, ge=1, le=16, description="recogniser processes")
    speech_timeout_ms: int = Field(
        3000, ge=200, le=30000, description="longest wait for a recognition: then no input"
    )
    spool_dir: Path = Field(Path("data/spool"), description="events kept here while DB is down")
    spool_max_line_bytes: int = Field(
        1 << 20,
        ge=1 << 16,
        le=1 << 30,
        description="a longer spool line (a damaged spool; a call's is ~1 KB) is moved to "
        "calls.rejected.jsonl, cut, unread",
    )
    call_write_linger_ms: int = Field(
        200,
        ge=0,
        le=5000,
        description="calls ending within this long share one timeline write; 0: one per call",
    )
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING or ERROR, any case")
    # The contact centre (issue #3): all off unless agents_file is set.
    agents_file: Path | None = Field(
        None, description="agents.yaml: routing profiles + desktop logins; None: no agents"
    )
    routing_file: Path = Path("config/routing.yaml")
    agent_state_url: str | None = Field(None, description="None/memory:// or redis://HOST:6379/0")
    ami_url: AmiUrl | None = Field(
        None, description="ami://USER:SECRET@HOST:5038: agent answers and hang-ups from Asterisk"
    )
    esl_url: EslUrl | None = Field(
        None, description="esl://:PASSWORD@HOST:8021: FreeSWITCH call events for the bridge"
    )
    agent_events_on_timeline: bool = Field(
        True,
        description="call.agent_* events from AMI; false where the call-event bridge records them",
    )
    ring_timeout_s: float = Field(20.0, gt=0, le=300)
    ring_expiry_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="a ringing agent nobody gave back is available again after this long; "
        "longer than ring_timeout_s; None: ring_timeout_s + 30",
    )
    auto_wrap_up_s: float | None = Field(None, ge=0, le=3600)
    # Continue by SMS (issue #4): off unless a signing secret is set.
    continuation_secret: str | None = Field(
        None, description="hex, >= 32 bytes: signs continuation links; None: no SMS offer"
    )
    public_url: str = Field("http://127.0.0.1:8080", description="base of continuation links")
    continue_sms_deadline_ms: int = Field(
        1500,
        ge=100,
        le=10000,
        description="the longest a caller waits in silence after pressing * for the SMS to be "
        "written; then they are routed as usual",
    )
    continuation_redis_url: RedisUrl | None = Field(
        None,
        description="redis://...: an extra used-token check; single use itself is kept on the "
        "timeline (continuation:{jti}), across processes and restarts",
    )
    webhooks_file: Path | None = Field(
        None, description="webhook subscriptions (docs/webhooks.md); None: no webhooks"
    )
    desktop_allowed_origins: list[str] = Field(default_factory=list)
    desktop_secure_cookie: bool = True
    desktop_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="reverse proxies (addresses/networks) whose X-Forwarded-For names the "
        "desktop's client for its login limits; env: comma-separated",
    )
    # Agent management over HTTP (issue #3): POST/PUT/PATCH/DELETE /v1/agents need
    # "Authorization: Bearer <admin_token>"; None: those endpoints answer 403.
    admin_token: SecretStr | None = Field(
        None, description="random, >= 32 characters (e.g. openssl rand -hex 32); None: off"
    )

    # The HTTP API (every /v1 route, /metrics): "Authorization: Bearer <one of api_tokens>".
    # Empty: no authentication, allowed only on a loopback http_host or with the opt-out.
    api_tokens: list[SecretStr] = Field(
        default_factory=list,
        description="bearer tokens of the HTTP API, each like admin_token; env: comma-separated",
    )
    allow_unauthenticated_http: bool = Field(
        False, description="true: serve the API without api_tokens on a non-loopback http_host"
    )
    # Without api_tokens, the API answers only requests whose Host is a loopback name, http_host,
    # the host of public_url or of a desktop_allowed_origins entry, or one of these (DNS
    # rebinding: a foreign name resolved to 127.0.0.1 must not reach the timelines).
    http_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="more Host names the API answers to without api_tokens (e.g. the name a "
        "proxy forwards); '*': any; env: comma-separated",
    )

    @field_validator("pbx_allowlist", "desktop_trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        parse_networks(value)
        return value

    @field_validator("loop_watchdog_s")
    @classmethod
    def _watchdog_off_or_a_second(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (off) or at least 1 (seconds)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_token_strength(value.get_secret_value())
        return value

    @field_validator(
        "api_tokens",
        "desktop_allowed_origins",
        "pbx_allowlist",
        "http_allowed_hosts",
        "desktop_trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object, info: ValidationInfo) -> object:
        """The environment (and a file, if written so) gives one comma-separated string.
        Empty: no origins; but an empty token list is refused (``IVR_ENGINE_API_TOKENS=$X``
        with X unset must not quietly mean "no authentication")."""
        if isinstance(value, str | SecretStr):
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not text.strip() and info.field_name != "api_tokens":
                return []
            return [item.strip() for item in text.split(",")]
        return value

    @field_validator("api_tokens")
    @classmethod
    def _strong_api_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        if len(value) > MAX_API_TOKENS:
            raise ValueError(f"at most {MAX_API_TOKENS} tokens")
        for number, token in enumerate(value, start=1):
            try:
                check_token_strength(token.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"token {number} of {len(value)}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _http_not_open_to_the_network(self) -> Settings:
        if self.api_tokens or self.allow_unauthenticated_http or is_loopback(self.http_host):
            return self
        raise PydanticCustomError(
            "open_http",
            "{host} is not a loopback address and api_tokens is empty: anyone who reaches the "
            "port could read customer timelines. Set api_tokens (env IVR_ENGINE_API_TOKENS, "
            "comma-separated, each made with `openssl rand -hex 32`), or bind http_host to "
            "127.0.0.1, or set allow_unauthenticated_http: true if a proxy in front "
            "authenticates every request",
            {"key": "http_host", "host": repr(self.http_host)},
        )

    def api_host_names(self) -> list[str]:
        """The ``Host`` names an API without ``api_tokens`` answers to, besides loopback."""
        urls = [self.public_url, *self.desktop_allowed_origins]
        named = [urlsplit(url).netloc.rpartition("@")[2] for url in urls]
        return [self.http_host, *named, *self.http_allowed_hosts]

    @model_validator(mode="after")
    def _call_ports_not_open_to_the_network(self) -> Settings:
        """FastAGI and ESL authenticate nobody: beyond loopback, only the PBXs named."""
        if self.pbx_allowlist or self.allow_any_pbx:
            return self
        listeners = [("agi_host", self.agi_host, "FastAGI")]
        if self.esl_port is not None:
            listeners.append(("esl_host", self.esl_host, "the ESL outbound socket"))
        for key, host, what in listeners:
            if is_loopback(host):
                continue
            raise PydanticCustomError(
                "open_call_port",
                "{host} is not a loopback address and pbx_allowlist is empty: whoever reaches "
                "{what} could play any caller, hear their personalised menu and write to their "
                "timeline. Set pbx_allowlist to your PBXs (env IVR_ENGINE_PBX_ALLOWLIST, "
                "comma-separated addresses or networks, e.g. 10.0.0.5,10.0.1.0/24), or bind "
                "{key} to 127.0.0.1, or set allow_any_pbx: true if a firewall lets only the "
                "PBXs reach the port",
                {"key": key, "host": repr(host), "what": what},
            )
        return self

    @model_validator(mode="after")
    def _ring_expiry_after_the_ring(self) -> Settings:
        if self.ring_expiry_s is None or self.ring_expiry_s > self.ring_timeout_s:
            return self
        raise PydanticCustomError(
            "ring_expiry",
            "ring_expiry_s {expiry} is not longer than ring_timeout_s {ring}: an agent still "
            "ringing would be offered another call",
            {"key": "ring_expiry_s", "expiry": self.ring_expiry_s, "ring": self.ring_timeout_s},
        )

    @model_validator(mode="after")
    def _workers_share_agent_state(self) -> Settings:
        """Each worker routes calls: with agents, they must share one agent state."""
        if self.workers == 1 or self.agents_file is None or is_shared_state(self.agent_state_url):
            return self
        raise PydanticCustomError(
            "workers_memory_state",
            "workers is {workers} and agents_file is set, but agent state is kept in each "
            "process's memory (agent_state_url {url}): two workers could ring the same agent. "
            "Set agent_state_url: redis://HOST:6379/0 (env IVR_ENGINE_AGENT_STATE_URL), or "
            "workers: 1",
            {
                "key": "agent_state_url",
                "workers": self.workers,
                "url": repr(None if self.agent_state_url is None else redact(self.agent_state_url)),
            },
        )

    @field_validator("agent_state_url")
    @classmethod
    def _agent_state_url(cls, value: str | None) -> str | None:
        if value is not None and value != "memory://":
            try:
                check_redis_url(value)
            except ValueError as exc:
                raise ValueError(f"{exc}; or memory:// (in-process)") from None
        return value


def problem(error: ErrorDetails) -> str:
    """A settings error's message without pydantic's ``"Value error, "`` prefix: our own
    validators' words as written (every settings model, the engine's and the bridge's)."""
    return error["msg"].removeprefix("Value error, ")


def check_token_strength(text: str) -> None:
    """The rule of every bearer token (admin_token, api_tokens): ``ValueError`` if weak."""
    if len(text) < MIN_ADMIN_TOKEN or len(text) > MAX_TOKEN:
        raise ValueError(
            f"must be {MIN_ADMIN_TOKEN} to {MAX_TOKEN} characters (make one: openssl rand -hex 32)"
        )
    if not all(33 <= ord(char) <= 126 for char in text):
        raise ValueError("printable ASCII only, no spaces (make one: openssl rand -hex 32)")


def is_shared_state(url: str | None) -> bool:
    """An ``agent_state_url`` every engine process sees alike (Redis), not process memory."""
    return url is not None and url.startswith(("redis://", "rediss://", "unix://"))


def check_database_url(url: str) -> None:
    """``ValueError`` unless the engine can open ``url`` (``timeline.urls``: sqlite:///FILE,
    postgresql://USER@HOST:PORT/DB, or their +aiosqlite / +asyncpg forms); its password is
    never in the message."""
    try:
        parse_database_url(url)
    except UnsupportedDatabaseUrl as exc:
        raise ValueError(str(exc).removeprefix("database_url: ")) from None


REDIS_URL_FORM = "redis://:PASSWORD@HOST:6379/0 (or rediss://, unix:///PATH?db=0)"


def check_redis_url(url: str) -> None:
    """``ValueError`` unless redis-py can connect with ``url`` as written: the scheme, a
    port from 0 to 65535, a numeric database, valid ``?options``. Said without the URL's
    words (a raw "/" in a password becomes the "port", which urllib's message quotes)."""
    parts, _ = _split_switch_url(url, REDIS_URL_FORM)
    shown = redact(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"{shown!r}: scheme must be redis, rediss or unix, not "
            f"{parts.scheme or 'none'!r}: use {REDIS_URL_FORM}"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"{shown!r}: no socket path: use unix:///PATH/redis.sock")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        if "@" in parts.path:  # a raw "/" in the user or password ended the userinfo early
            # no URL in the message: what stands for the host may be a piece of the password
            raise ValueError(
                "the user or password holds a raw '/' (the URL has an '@' after it): in "
                f"the user and password '/' must be percent-encoded as %2F, '@' as %40: "
                f"use {REDIS_URL_FORM}"
            )
        raise ValueError(f"{shown!r}: the database after the port must be a number, e.g. /0")
    from redis.connection import parse_url

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError:
        raise ValueError(
            f"{shown!r}: refused by redis-py (an ?option with an invalid value?): use "
            f"{REDIS_URL_FORM}"
        ) from None


def check_region(code: str) -> None:
    """``ValueError`` unless ``code`` is a region phonenumbers parses national numbers of."""
    import phonenumbers

    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"{code!r} is not a region phonenumbers knows: use an ISO 3166 code in capitals "
            "(US, GB, DE, FR, ...)"
        )


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost``; anything else (``0.0.0.0``, ``""``, a
    name) may be reachable from the network."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_switch_url(url: str, form: str) -> tuple[SplitResult, int | None]:
    """``urlsplit`` and its port; ``ValueError`` saying what is wrong and ``form``. Never
    urllib's own words: they quote the piece it choked on, which may be a piece of the
    password (a raw "/" in it ends the userinfo early, and what follows is the "port")."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"not a valid URL ({RAW_IN_PASSWORD}): use {form}") from None
    try:
        return parts, parts.port
    except ValueError:
        raise ValueError(
            f"the port is not a number from 0 to 65535 ({RAW_IN_PASSWORD}): use {form}"
        ) from None


AMI_URL_FORM = "ami://USER:SECRET@HOST:5038"


def parse_ami_url(url: str) -> tuple[str, int, str, str]:
    """``ami://USER:SECRET@HOST:PORT`` → (host, port, user, secret)."""
    parts, port = _split_switch_url(url, AMI_URL_FORM)
    if parts.scheme != "ami" or not parts.hostname or not parts.username or port == 0:
        raise ValueError(f"use {AMI_URL_FORM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # also what a raw "@" then "/", "?" or "#" in the secret reads as: host and a rest
        raise ValueError(f"nothing after the port ({RAW_IN_PASSWORD}): use {AMI_URL_FORM}")
    return (
        parts.hostname,
        port or 5038,
        unquote(parts.username),
        unquote(parts.password or ""),
    )


ESL_URL_FORM = "esl://:PASSWORD@HOST:8021"


def parse_esl_url(url: str) -> tuple[str, int, str]:
    """``esl://:PASSWORD@HOST:PORT`` → (host, port, password): FreeSWITCH's inbound Event
    Socket (``event_socket.conf.xml``: ``listen-ip``, ``listen-port``, ``password``)."""
    parts, port = _split_switch_url(url, ESL_URL_FORM)
    if parts.scheme != "esl":
        raise ValueError(f"scheme must be esl, not {parts.scheme or 'none'!r}: use {ESL_URL_FORM}")
    if not parts.hostname:
        raise ValueError(f"no host: use {ESL_URL_FORM}")
    if port is None:
        raise ValueError(f"no port (FreeSWITCH's listen-port, usually 8021): use {ESL_URL_FORM}")
    if parts.username:
        raise ValueError(f"the inbound socket takes a password only, no user: use {ESL_URL_FORM}")
    password = unquote(parts.password or "")
    if not password or any(c in password for c in "\r\n"):
        raise ValueError(f"no password (or one with a line break): use {ESL_URL_FORM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"nothing after the port: use {ESL_URL_FORM}")
    return parts.hostname, port, password


def _from_environment(environ: Mapping[str, str]) -> dict[str, str | None]:
    """``IVR_ENGINE_<NAME>`` values; an empty value switches an optional setting (one whose
    default is None, e.g. ``IVR_ENGINE_ESL_PORT=``) off."""
    fields = Settings.model_fields
    found: dict[str, str | None] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != CONFIG_ENV:
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields:
                raise ConfigError(
                    f"environment: {key}: unknown setting (known: {sorted(fields)}; "
                    f"{CONFIG_ENV} names the settings file)"
                )
            optional = fields[name].default is None and not fields[name].is_required()
            found[name] = None if optional and not value.strip() else value
    return found


def config_file_from(environ: Mapping[str, str], default: Path | None = None) -> Path | None:
    """The settings file ``IVR_ENGINE_CONFIG`` names, else ``default``."""
    named = environ.get(CONFIG_ENV, "").strip()
    return Path(named) if named else default


def _from_file(path: Path) -> dict[str, Any]:
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read settings: {exc}") from exc
    except yaml.YAMLError as exc:  # said without the file's text: it holds secrets
        raise ConfigError(f"{path}: cannot read settings: {describe_yaml_error(exc)}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: <top>: expected a mapping of setting: value")
    return raw


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge the layers and validate; ``ConfigError`` names the source and the key."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), _from_file(config_file)))
    layers.append(("environment", _from_environment(os.environ if environ is None else environ)))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        merged.update(values)
        origin.update(dict.fromkeys(values, source))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        lines = []
        for item in exc.errors():
            key = str(item["loc"][0]) if item["loc"] else item.get("ctx", {}).get("key", "<top>")
            # a rule across settings (no loc) names a key nobody may have set: "settings"
            source = origin.get(key, "defaults" if item["loc"] else "settings")
            env_hint = f" (env {ENV_PREFIX}{key.upper()})" if source == "environment" else ""
            message = problem(item)
            if item["type"] == "extra_forbidden":  # a typo in the file: say what exists
                message = f"unknown setting (known: {sorted(Settings.model_fields)})"
            lines.append(f"{source}: {key}{env_hint}: {message}")
        raise ConfigError("\n".join(lines)) from None  # its text quotes the input
