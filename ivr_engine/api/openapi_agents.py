"""OpenAPI paths of agent management (``contact_center.agents_api``).

``openapi.openapi_document`` adds them with ``paths.update(agent_paths(b))``. Write
operations carry the ``adminToken`` security scheme (``Authorization: Bearer``) and its
401/403 answers; 422 is a roster rule (unknown skill, no way to log in).
"""

from __future__ import annotations

from typing import Any

from ivr_engine.api.openapi_messages import OperationBuilder
from ivr_engine.contact_center import agent_bodies as bodies
from ivr_engine.contact_center.agents_json import AgentJson, AgentListJson

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the admin_token setting (IVR_ENGINE_ADMIN_TOKEN)",
    }
}
_AGENT_ID = {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"}}
_ERROR = {"$ref": "#/components/schemas/ErrorJson"}
_ADMIN_ERRORS = {
    "401": "No or wrong admin token (Authorization: Bearer <admin_token>)",
    "403": "Agent management is off (admin_token not set), or an API token was sent",
    "422": "A roster rule: unknown skill, or no password nor token_sha256",
}


def agent_paths(b: OperationBuilder) -> dict[str, Any]:
    agent = b.shape(AgentJson)
    body_errors = ("400", "404", "413", "415", "503")
    return {
        "/v1/agents": {
            "get": b.operation(
                "The roster with each agent's live state", b.shape(AgentListJson), errors=()
            ),
            "post": _admin(
                b.operation(
                    "Create an agent (password stored as a scrypt hash only)",
                    agent,
                    status="201",
                    body=bodies.NewAgentBody,
                    errors=("400", "409", "413", "415", "503"),
                )
            ),
        },
        "/v1/agents/{agent_id}": {
            "get": b.operation("One agent", agent, params=[_AGENT_ID], errors=("404",)),
            "put": _admin(
                b.operation(
                    "Replace an agent's profile (credentials kept unless given)",
                    agent,
                    body=bodies.AgentProfileBody,
                    params=[_AGENT_ID],
                    errors=(*body_errors, "409"),
                )
            ),
            "patch": _admin(
                b.operation(
                    "Change some fields of an agent",
                    agent,
                    body=bodies.AgentPatchBody,
                    params=[_AGENT_ID],
                    errors=(*body_errors, "409"),
                )
            ),
            "delete": _admin(_deleted(b)),
        },
    }


def _deleted(b: OperationBuilder) -> dict[str, Any]:
    summary = "Delete an agent (logged out, no longer routed to)"
    op = b.operation(summary, {}, params=[_AGENT_ID], errors=("404", "503"))
    op["responses"] = {"204": {"description": "Deleted"}, **op["responses"]}
    del op["responses"]["200"]
    return op


def _admin(op: dict[str, Any]) -> dict[str, Any]:
    op["security"] = [{"adminToken": []}]
    codes = (
        _ADMIN_ERRORS
        if "requestBody" in op
        else {k: v for k, v in _ADMIN_ERRORS.items() if k != "422"}
    )
    for code, description in codes.items():
        op["responses"][code] = {
            "description": description,
            "content": {"application/json": {"schema": _ERROR}},
        }
    return op
