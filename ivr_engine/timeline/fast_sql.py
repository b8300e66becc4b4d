"""The statements of the raw-driver write path (``fast_writer.py``), PostgreSQL and SQLite.

PostgreSQL: a whole batch of calls is ONE statement over column arrays (``PG_BATCH``); the
customers of a batch of new callers are created under per-phone advisory locks.
"""

from __future__ import annotations

from ivr_engine.timeline.identity_locks import pg_lock_identities

EVENT_COLUMNS = (
    "event_id, customer_id, occurred_at, recorded_at, channel, event_type, intent, case_id, data"
)
FIELD_UPDATE = """ON CONFLICT (customer_id, name) DO UPDATE SET value = excluded.value,
    source_channel = excluded.source_channel, updated_at = excluded.updated_at,
    verified = excluded.verified WHERE known_fields.updated_at < excluded.updated_at"""

# PostgreSQL: the whole batch is ONE statement (one round trip, atomic on its own, no
# BEGIN/COMMIT): each column travels as an array and is unnested; the customers CTE maps
# each id to its survivor, and its rows tell which ids exist. The ids and their survivors
# are locked FOR KEY SHARE together, in id order (as ``sql.survivors`` locks them): a merge in
# progress (FOR UPDATE, also in id order) is waited for and its result read, without a lock
# taken out of order (the events' foreign-key checks then lock nothing new), and the
# survivor's own survivor is followed (a merge of the survivor that was waited for). The ids
# to lock are ONE array, so they are found through the primary key: ``id = ANY(..) OR id IN
# (subquery)`` read every customer (seconds per batch with a million of them).
PG_BATCH = f"""
WITH locked AS (
    SELECT id, merged_into FROM customers
    WHERE id = ANY($1::text[] || ARRAY(
        SELECT merged_into FROM customers
        WHERE id = ANY($1::text[]) AND merged_into IS NOT NULL))
    ORDER BY id FOR KEY SHARE
), owners AS (
    SELECT l.id, COALESCE(s.merged_into, l.merged_into, l.id) AS owner
    FROM locked l LEFT JOIN locked s ON s.id = l.merged_into
    WHERE l.id = ANY($1::text[])
), new_events AS (
    INSERT INTO timeline_events ({EVENT_COLUMNS})
    SELECT e.event_id, o.owner, e.occurred_at, $2::timestamptz, e.channel, e.event_type,
           e.intent, e.case_id, e.data::jsonb
    FROM unnest($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[]) WITH ORDINALITY
         AS e(event_id, customer_id, occurred_at, channel, event_type, intent, case_id, data, n)
    JOIN owners o ON o.id = e.customer_id
    ORDER BY e.n  -- rows (and so their seq) in the order of the batch
    ON CONFLICT (event_id) DO NOTHING
    RETURNING 1
), new_fields AS (
    INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, verified)
    SELECT DISTINCT ON (o.owner, f.name) o.owner, f.name, f.value, f.source_channel,
           f.updated_at, f.verified
    FROM unnest($11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[],
                $16::bool[])
         AS f(customer_id, name, value, source_channel, updated_at, verified)
    JOIN owners o ON o.id = f.customer_id
    ORDER BY o.owner, f.name, f.updated_at DESC
    {FIELD_UPDATE}
    RETURNING 1
)
SELECT id, owner FROM owners
"""
PG_PHONE_OWNERS = """
SELECT value, array_agg(DISTINCT customer_id ORDER BY customer_id) FROM identities
WHERE kind = 'phone' AND value = ANY($1::text[]) GROUP BY value"""
# the store's create_customer_for_identity lock key, taken in key order (no deadlock)
PG_LOCK_PHONES = pg_lock_identities("$1", "'phone'")
PG_NEW_CUSTOMERS = """
INSERT INTO customers (id, display_name, created_at, updated_at)
SELECT id, NULL, $2, $2 FROM unnest($1::text[]) AS id
ON CONFLICT (id) DO NOTHING"""
PG_NEW_PHONES = """
INSERT INTO identities (customer_id, kind, value)
SELECT c, 'phone', p FROM unnest($1::text[], $2::text[]) AS t(c, p)
ON CONFLICT (customer_id, kind, value) DO NOTHING"""
SQLITE_PHONE_OWNERS = (
    "SELECT DISTINCT value, customer_id FROM identities WHERE kind = 'phone' AND value IN ({})"
)
SQLITE_NEW_CUSTOMER = (
    "INSERT INTO customers (id, display_name, created_at, updated_at) VALUES (?, NULL, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
SQLITE_NEW_PHONE = (
    "INSERT INTO identities (customer_id, kind, value) VALUES (?, 'phone', ?) "
    "ON CONFLICT (customer_id, kind, value) DO NOTHING"
)
SQLITE_EVENT = (
    f"INSERT INTO timeline_events ({EVENT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)
SQLITE_FIELD = (
    "INSERT INTO known_fields (customer_id, name, value, source_channel, updated_at, verified) "
    f"VALUES (?, ?, ?, ?, ?, ?) {FIELD_UPDATE}"
)
# a saved account number's identity (``fast_accounts``): $2 / ?2 is the field name, $3 / ?3
# the identity kind; PostgreSQL locks each number as the store does (``account_identities``)
PG_ACCOUNT_FIELDS = (
    "SELECT customer_id, value FROM known_fields WHERE customer_id = ANY($1::text[]) AND name = $2"
)
PG_LOCK_ACCOUNTS = pg_lock_identities("$1", "$2")
PG_ACCOUNT_OWNERS = (
    "SELECT value, customer_id FROM identities WHERE value = ANY($1::text[]) AND kind = $2"
)
PG_NEW_ACCOUNTS = """
INSERT INTO identities (customer_id, kind, value)
SELECT c, $3, a FROM unnest($1::text[], $2::text[]) AS t(c, a)
ON CONFLICT (customer_id, kind, value) DO NOTHING"""
SQLITE_ACCOUNT_FIELDS = (
    "SELECT customer_id, value FROM known_fields WHERE name = ? AND customer_id IN ({})"
)
SQLITE_ACCOUNT_OWNERS = "SELECT value, customer_id FROM identities WHERE kind = ? AND value IN ({})"
SQLITE_NEW_ACCOUNT = (
    "INSERT INTO identities (customer_id, kind, value) VALUES (?, ?, ?) "
    "ON CONFLICT (customer_id, kind, value) DO NOTHING"
)
# the events a replayed call may find stored (``FastCallWriter.stored_events``)
_STORED = "SELECT event_id, customer_id, occurred_at, channel, event_type, intent, case_id, data"
PG_STORED_EVENTS = f"{_STORED} FROM timeline_events WHERE event_id = ANY($1::text[])"
SQLITE_STORED_EVENTS = f"{_STORED} FROM timeline_events WHERE event_id IN ({{}})"
