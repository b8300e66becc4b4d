"""A customer's cross-channel timeline as a page (mount it at ``/timeline``).

``create_timeline_ui_app(store)`` serves one static page (vanilla JS, nothing from a CDN,
no inline script) that reads everything through the engine's JSON API on the same origin:
``GET <api_base>v1/customers?phone=`` (or ``?email=``), then
``GET <api_base>v1/customers/{id}/timeline?limit=&before=``.
"""

from __future__ import annotations

from ivr_engine.timeline_ui.app import DEFAULT_PAGE_SIZE, create_timeline_ui_app
from ivr_engine.timeline_ui.headers import CONTENT_SECURITY_POLICY

__all__ = ["CONTENT_SECURITY_POLICY", "DEFAULT_PAGE_SIZE", "create_timeline_ui_app"]
