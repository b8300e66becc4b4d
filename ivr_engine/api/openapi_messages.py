"""OpenAPI paths of the text-channel routes (``routes_messages``).

``openapi.openapi_document`` adds them with ``paths.update(message_paths(b))``; ``b`` is its
``_Builder``, seen here through the ``OperationBuilder`` protocol (no import cycle).
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from ivr_engine.api import schemas_messages as sm

_BODY_ERRORS = ("400", "404", "409", "413", "415", "503")
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_MESSAGE_REPLAYS = (
    "message_id (per channel) is the idempotency key. A retry of the same message answers "
    "200 with inserted: false, the original's customer_id (its survivor after a merge) and "
    "conversation_id, and writes nothing; a different message under the same message_id is "
    "409 message_id_conflict. customer_created and conversation_created say what this "
    "request created, as on POST /v1/events: true only in the answer to the request that "
    "created the customer (the conversation: the request that stored the message). A new "
    "sender's customer is created in the message's transaction, so a message the database "
    "refuses leaves no customer, and a replay (also a concurrent twin's) says false for both."
)
_CONVERSATION_STATE = (
    "state is open, closed (each customer's newest event of it is case.closed) or aged_out "
    "(no case.closed, but no activity for longer than open_case_max_age_days, the largest of "
    "the menus in force: no menu offers it as an open case any more); open is state == open. "
    "Any new event of the conversation opens it again. "
)
_CONVERSATION_NUMBERS = (
    "Numbers in the events' data read back the same on SQLite and PostgreSQL: a whole "
    "number of magnitude 1e16 or more as a plain integer (1e23 as "
    "100000000000000000000000), a negative zero as 0.0, every other number as sent; see "
    "GET /v1/customers/{id}/timeline."
)


class OperationBuilder(Protocol):
    def model(self, model: type[BaseModel]) -> dict[str, Any]: ...

    def shape(self, shape: Any) -> dict[str, Any]: ...

    def query(self, model: type[BaseModel]) -> list[dict[str, Any]]: ...

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
    ) -> dict[str, Any]: ...


def message_paths(b: OperationBuilder) -> dict[str, Any]:
    message_ok = b.shape(sm.MessageResultJson)
    close_ok = b.shape(sm.CloseResultJson)
    close = b.operation(
        "Close a conversation (appends case.closed; the body is optional)",
        close_ok,
        status="201",
        body=sm.CloseIn,
        params=[_ID],
        errors=("400", "404", "413", "415", "503"),
        extra={"200": _json("Already closed", close_ok)},
    )
    close["requestBody"]["required"] = False
    return {
        "/v1/messages": {
            "post": b.operation(
                "Record a chat, e-mail, SMS or messenger message (idempotent on message_id)",
                message_ok,
                status="201",
                body=sm.MessageIn,
                errors=_BODY_ERRORS,
                extra={"200": _json("Replay: message_id already stored", message_ok)},
            )
            | {"description": _MESSAGE_REPLAYS},
        },
        "/v1/conversations/{id}": {
            "get": b.operation(
                "Page a conversation's events across all channels, oldest first",
                b.shape(sm.ConversationJson),
                params=[_ID, *b.query(sm.ConversationQuery)],
            )
            | {"description": _CONVERSATION_STATE + _CONVERSATION_NUMBERS},
        },
        "/v1/conversations/{id}/close": {"post": close},
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
