"""The OpenAPI 3.1 document, generated from the request models and the response TypedDicts.

Request bodies and query parameters come from the pydantic models that validate them
(``model_json_schema``); responses from the TypedDicts the handlers return (mypy checks
those), so the document cannot drift from the code silently.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ivr_engine.api import (
    openapi_agents,
    openapi_messages,
    openapi_optional,
    preview,
    schemas,
    serialize,
)
from ivr_engine.api.auth import ANY_HOST_PATHS, OPEN_PATHS

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "400": "Invalid request: the message names the field path",
    "404": "Not found",
    "408": "body_timeout: the body did not arrive whole in time (http_body_timeout_s, "
    "+1 s per KiB received)",
    "409": "Conflict",
    "413": "Body too large",
    "415": "Body is not application/json",
    "503": "Timeline store unavailable",
}
_API_TOKEN = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "one of the api_tokens setting (IVR_ENGINE_API_TOKENS), or admin_token; "
        "required on every operation but the open ones when api_tokens is set",
    }
}
_UNAUTHORIZED = "No or wrong bearer token (WWW-Authenticate: Bearer)"
_WRONG_HOST = (
    "host_not_allowed: without api_tokens the engine answers only under localhost, "
    "127.0.0.1, [::1] and the names in http_allowed_hosts (DNS rebinding)"
)
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
DATA_NUMBERS = (
    "Numbers in an event's data read back the same on SQLite and PostgreSQL: a whole "
    "number of magnitude 1e16 or more as a plain integer, the decimal value of the number "
    "sent (1e23 reads back as 100000000000000000000000), a negative zero as 0.0, every other "
    "number as sent (1.5, 2.0, 1e-07, integers of any size exactly). A number with a "
    "fraction or an exponent is a double: more digits than a double holds are rounded to "
    "the nearest one (3.14159265358979323846 reads back as 3.141592653589793)."
)
_EVENT_REPLAYS = (
    "event_id is the idempotency key. A retry of the same event answers 200 with inserted: "
    "false and writes nothing: the same customer (customer_id, before or after a merge, or "
    "an identity it owns), channel, event_type, intent, case_id, data (numbers compared by "
    "value), occurred_at when given, and the same fields. Anything else under a stored "
    "event_id is 409 event_id_conflict, its differs naming what differs, and writes "
    "nothing. An identity nobody owns gets its new customer in the event's transaction: an "
    "event the database refuses leaves no customer. customer_created is true only in the "
    "answer to the request that created the customer (and stored the event): a replay, also "
    "a concurrent twin's, says false. Events stored before schema revision 0005 kept no "
    "fields: a replay's fields are not compared with them. "
)


class _Builder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def model(self, model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF)
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    def shape(self, shape: Any) -> dict[str, Any]:
        schema = TypeAdapter(shape).json_schema(ref_template=_REF, mode="serialization")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[shape.__name__] = schema
        return {"$ref": _REF.format(model=shape.__name__)}

    def query(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template=_REF)
        required = set(schema.get("required", []))
        return [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()
        ]

    def operation(
        self,
        summary: str,
        ok: dict[str, Any],
        *,
        status: str = "200",
        body: type[BaseModel] | None = None,
        params: list[dict[str, Any]] | None = None,
        errors: tuple[str, ...] = ("400", "404", "503"),
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        responses: dict[str, Any] = {status: _json("OK" if status == "200" else "Created", ok)}
        responses.update(extra or {})
        error = {"$ref": _REF.format(model="ErrorJson")}
        for code in errors:
            responses[code] = _json(_ERRORS[code], error)
        op: dict[str, Any] = {"summary": summary, "responses": responses}
        if params:
            op["parameters"] = params
        if body is not None:
            op["requestBody"] = {"required": True, "content": _content(self.model(body))}
            responses["408"] = _json(_ERRORS["408"], error)
        return op


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _content(schema)}


@cache
def openapi_document() -> dict[str, Any]:
    b = _Builder()
    b.shape(serialize.ErrorJson)
    customer = b.shape(serialize.CustomerJson)
    body_errors = ("400", "404", "413", "415", "503")
    field_name = TypeAdapter(schemas.FieldName).json_schema()
    name = {"name": "name", "in": "path", "required": True, "schema": field_name}
    event_ok = b.shape(serialize.EventResultJson)
    paths: dict[str, Any] = {
        "/v1/customers": {
            "post": b.operation(
                "Create a customer",
                customer,
                status="201",
                body=schemas.CreateCustomer,
                errors=("400", "413", "415", "503"),
            ),
            "get": b.operation(
                "Find customers by identity (several until merged)",
                b.shape(serialize.CustomerListJson),
                params=b.query(schemas.LookupQuery),
                errors=("400", "503"),
            ),
        },
        "/v1/customers/{id}": {
            "get": b.operation("Get a customer", customer, params=[_ID]),
            "patch": b.operation(
                "Rename a customer",
                customer,
                body=schemas.UpdateCustomer,
                params=[_ID],
                errors=body_errors,
            ),
        },
        "/v1/customers/{id}/identities": {
            "post": b.operation(
                "Add an identity",
                customer,
                body=schemas.IdentityIn,
                params=[_ID],
                errors=body_errors,
            ),
        },
        "/v1/customers/{id}/merge": {
            "post": b.operation(
                "Merge source_customer_id into this customer",
                customer,
                body=schemas.MergeRequest,
                params=[_ID],
                errors=(*body_errors, "409"),
            ),
        },
        "/v1/customers/{id}/fields/{name}": {
            "put": b.operation(
                "Save a known field (one a menu declares: min_digits..max_digits of 0-9); "
                "it replaces the stored value, even one stamped later; answers it as stored",
                b.shape(serialize.NamedFieldJson),
                body=schemas.PutField,
                params=[_ID, name],
                errors=body_errors,
            ),
        },
        "/v1/customers/{id}/timeline": {
            "get": b.operation(
                "Page the timeline, newest first",
                b.shape(serialize.TimelineJson),
                params=[_ID, *b.query(schemas.TimelineQuery)],
            )
            | {"description": DATA_NUMBERS},
        },
        "/v1/events": {
            "post": b.operation(
                "Append an event (idempotent on event_id; 409 when the id holds another event)",
                event_ok,
                status="201",
                body=schemas.EventIn,
                errors=(*body_errors, "409"),
                extra={"200": _json("Replay: the same event is stored already", event_ok)},
            )
            | {"description": _EVENT_REPLAYS + DATA_NUMBERS},
        },
        "/v1/menu-preview": {
            "get": b.operation(
                "The menu the engine would offer this caller now",
                b.shape(preview.PreviewJson),
                params=b.query(schemas.PreviewQuery),
                errors=("400", "404"),
            ),
        },
        "/healthz": {
            "get": b.operation(
                "Liveness and store reachability",
                b.shape(serialize.HealthJson),
                errors=("503",),
            ),
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
        "/docs": {
            "get": {
                "summary": "Human-readable list of the operations",
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    paths.update(openapi_messages.message_paths(b))
    paths.update(openapi_agents.agent_paths(b))
    paths.update(openapi_optional.optional_paths(b))
    _declare_security(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ivr-engine timeline API",
            "version": "1.0.0",
            "description": "Text channels and admins write into the shared customer timeline.",
        },
        "paths": paths,
        "components": {
            "schemas": b.schemas,
            "securitySchemes": {**_API_TOKEN, **openapi_agents.SECURITY_SCHEMES},
        },
    }


def served_document(served_paths: Collection[str]) -> dict[str, Any]:
    """The document with only the paths in ``served_paths`` (canonical, ``{id}`` style):
    agent, load and continuation routes exist only with their settings."""
    document = openapi_document()
    paths = {path: item for path, item in document["paths"].items() if path in served_paths}
    return {**document, "paths": paths}


def _declare_security(paths: dict[str, Any]) -> None:
    """Every operation needs the API token (agent writes: the admin token), except the
    open paths of ``auth.OPEN_PATHS``, which say so with an empty requirement. Without
    api_tokens, every operation but ``auth.ANY_HOST_PATHS`` may answer 421 instead."""
    error = _json(_UNAUTHORIZED, {"$ref": _REF.format(model="ErrorJson")})
    wrong_host = _json(_WRONG_HOST, {"$ref": _REF.format(model="ErrorJson")})
    for path, item in paths.items():
        for op in item.values():
            if path not in ANY_HOST_PATHS:
                op["responses"].setdefault("421", wrong_host)
            if path in OPEN_PATHS:
                op["security"] = []
                continue
            op.setdefault("security", [{"apiToken": []}])
            op["responses"].setdefault("401", error)
