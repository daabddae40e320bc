"""The alert store's tables, described once for SQLite and PostgreSQL (SQLAlchemy Core).

The database itself is created and upgraded by the Alembic migrations in ``alerts/migrations``
(:func:`alerts.migrate.upgrade`); this description is what the store's queries are built from, and
it must match the newest migration (``tests/test_alert_store.py`` compares them).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, Table, Text, false

metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    # BIGSERIAL in PostgreSQL; SQLite's INTEGER PRIMARY KEY AUTOINCREMENT never reuses an id.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("asset", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("started_at_ns", BigInteger, nullable=False),
    Column("last_anomalous_at_ns", BigInteger, nullable=False),
    Column("resolved_at_ns", BigInteger),
    Column("last_activity_ns", BigInteger, nullable=False),  # denormalised so `since` can use an index
    Column("severity", Text, nullable=False),
    Column("peak_score", Float(precision=53), nullable=False),
    Column("peak_probability", Float(precision=53), nullable=False),
    Column("top_sensors", Text, nullable=False),  # JSON: every field of each Contribution
    Column("unseen_operating_point", Boolean, nullable=False, server_default=false()),
    # Operators' columns (AlertStore.act); the lifecycle writes only the ones above.
    Column("acknowledged_at_ns", BigInteger),
    Column("acknowledged_by", Text),
    Column("shelved_until_ns", BigInteger),
    Column("shelved_reason", Text),
    # Wall-clock time of the row's last change by anyone (GET /alerts?updated_since= for pollers).
    Column("updated_at_ns", BigInteger),
    # Open alerts are reloaded at start-up; the API filters by asset and by recent activity.
    Index("alerts_state_idx", "state"),
    Index("alerts_asset_started_idx", "asset", "started_at_ns"),
    Index("alerts_activity_idx", "last_activity_ns"),
    Index("alerts_updated_idx", "updated_at_ns", "id"),
    Index("alerts_started_idx", "started_at_ns", "id"),  # GET /alerts pages, newest first
    sqlite_autoincrement=True,
)


# Every operator action on an alert, oldest first (GET /alerts/{id}).
alert_history = Table(
    "alert_history",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), nullable=False),
    Column("at_ns", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("comment", Text),
    Column("shelved_until_ns", BigInteger),
    Index("alert_history_alert_idx", "alert_id", "id"),
    sqlite_autoincrement=True,
)


# How far each alert output (plantwatch.outputs) has delivered in the order of changes: the
# (updated_at_ns, id) of the last alert it handed on.
output_cursors = Table(
    "output_cursors",
    metadata,
    Column("name", Text, primary_key=True),
    Column("updated_at_ns", BigInteger, nullable=False),
    Column("alert_id", BigInteger, nullable=False),
)


# Each alert's tags (the asset's topic segments and configured tags when it opened), one row per tag.
alert_tags = Table(
    "alert_tags",
    metadata,
    Column("alert_id", BigInteger, ForeignKey("alerts.id"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Index("alert_tags_lookup_idx", "name", "value", "alert_id"),
)
