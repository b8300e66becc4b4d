"""OpenAPI paths of the routes the engine adds to the API app only with some settings.

The load view (``contact_center.metrics.load_routes``: with ``agents_file``), the
continuation links (``omni.redeem_api``: with ``continuation_secret``) and the webhook dead
letters (``omni.webhook_admin``: with ``webhooks_file``, admin token). ``openapi`` adds
them like every other path; ``/openapi.json`` then lists only the paths the app serves
(``openapi.served_document``), so a document never names a route that would answer 404.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

from ivr_engine.api.openapi_messages import OperationBuilder
from ivr_engine.contact_center.load_json import LoadSnapshot
from ivr_engine.contact_center.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ivr_engine.domain.models import Channel
from ivr_engine.omni import webhook_admin_json as hooks
from ivr_engine.omni.redeem_api import MAX_BODY as REDEEM_MAX_BODY
from ivr_engine.omni.webhook_admin import LIST_PATH, REDRIVE_PATH

_ERROR = {"$ref": "#/components/schemas/ErrorJson"}
_LOAD_UNAVAILABLE = "Load unavailable (workers: the supervisor's load ledger did not answer)"
_HOOKS_ERRORS = {
    "401": "No or wrong admin token (Authorization: Bearer <admin_token>)",
    "403": "Admin routes off (admin_token not set), or an API token was sent",
    "404": "Unknown subscription_id (the message names the known ones)",
    "503": "Webhook delivery stopped (engine shutting down) or its store failed",
}


class RedeemJson(TypedDict):
    """``POST /v1/continuations/redeem``: what the caller left on the phone."""

    case_id: str
    customer_id: str
    channel: Channel
    intent: str | None
    fields: dict[str, str]  # values that may travel in clear
    sensitive_fields: list[str]  # names only: look the values up


def optional_paths(b: OperationBuilder) -> dict[str, Any]:
    return {**_load_paths(b), **_redeem_paths(b), **_webhook_paths(b)}


def _load_paths(b: OperationBuilder) -> dict[str, Any]:
    unavailable = ("503",)
    paths = {
        "/v1/load": {
            "get": b.operation(
                "Calls waiting and agents by state, per skill and team (with agents_file)",
                b.shape(LoadSnapshot),
                errors=unavailable,
            )
        },
        "/metrics": {
            "get": _text(
                b.operation("Prometheus metrics of the load", {}, errors=unavailable),
                METRICS_CONTENT_TYPE.partition(";")[0],
                "Prometheus text exposition format 0.0.4",
            )
        },
        "/v1/load.html": {
            "get": _text(b.operation("The supervisor's load page", {}, errors=()), "text/html")
        },
        "/v1/load.js": {
            "get": _text(b.operation("The load page's script", {}, errors=()), "text/javascript")
        },
    }
    for path in ("/v1/load", "/metrics"):
        paths[path]["get"]["responses"]["503"]["description"] = _LOAD_UNAVAILABLE
    return paths


def _redeem_paths(b: OperationBuilder) -> dict[str, Any]:
    summary = "Open a continuation link (single use; with continuation_secret)"
    errors = ("400", "404", "409", "413", "503")
    op = b.operation(summary, b.shape(RedeemJson), errors=errors)
    op["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"token": {"type": "string", "minLength": 1}},
                    "required": ["token"],
                    "description": f"at most {REDEEM_MAX_BODY} bytes",
                }
            }
        },
    }
    op["responses"]["404"]["description"] = "The link's customer is not in the timeline"
    op["responses"]["408"] = {
        "description": "body_timeout: the body did not arrive whole in time "
        "(http_body_timeout_s, +1 s per KiB received)",
        "content": {"application/json": {"schema": _ERROR}},
    }
    op["responses"]["409"]["description"] = "This link was already used"
    op["responses"]["410"] = {
        "description": "This link has expired",
        "content": {"application/json": {"schema": _ERROR}},
    }
    return {"/v1/continuations/redeem": {"post": op}}


def _webhook_paths(b: OperationBuilder) -> dict[str, Any]:
    listing = b.operation(
        "Webhook dead letters, oldest first (with webhooks_file; admin token)",
        b.shape(hooks.DeadLetterListJson),
        params=b.query(hooks.DeadLettersQuery),
        errors=("400", "404", "503"),
    )
    redrive = b.operation(
        "Send dead letters again: same delivery id and body (with webhooks_file; admin token)",
        b.shape(hooks.RedriveJson),
        body=hooks.RedriveBody,
        errors=("400", "404", "413", "415", "503"),
    )
    for op in (listing, redrive):
        op["security"] = [{"adminToken": []}]
        for code, description in _HOOKS_ERRORS.items():
            op["responses"][code] = {
                "description": description,
                "content": {"application/json": {"schema": _ERROR}},
            }
    return {LIST_PATH: {"get": listing}, REDRIVE_PATH: {"post": redrive}}


def _text(op: dict[str, Any], media_type: str, description: str = "OK") -> dict[str, Any]:
    op["responses"]["200"] = {
        "description": description,
        "content": {media_type: {"schema": {"type": "string"}}},
    }
    return op
