"""Alembic migrations of the timeline schema (run them with ``ivr_engine.timeline.migrate``)."""
