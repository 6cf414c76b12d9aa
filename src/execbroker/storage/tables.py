"""The database tables (SQLAlchemy Core). Alembic migrations create and evolve them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

__all__ = [
    "components",
    "heartbeats",
    "messages",
    "metadata",
    "name_bindings",
    "offer_sets",
    "preparing_times",
    "sessions",
    "skaha_credentials",
]


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use aware UTC")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONDocument: Any = sa.JSON().with_variant(JSONB(), "postgresql")
UUID_LENGTH = 36
NAME_LENGTH = 255

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

offer_sets = sa.Table(
    "offer_sets",
    metadata,
    sa.Column("uuid", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("owner", sa.String(NAME_LENGTH), nullable=False, index=True),
    sa.Column("result", sa.String(3), nullable=False),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("modified", UTCDateTime(), nullable=False),
    # The normalised request, kept for audit and for re-planning.
    sa.Column("request", JSONDocument, nullable=True),
    # Set once, under a guard: the one offer of this set that was accepted.
    sa.Column("accepted_session", sa.String(UUID_LENGTH), nullable=True),
    # Listing a user's offer sets, newest first (migration 0014).
    sa.Index("ix_offer_sets_owner_created", "owner", "created", "uuid"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("uuid", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column("owner", sa.String(NAME_LENGTH), nullable=False),
    sa.Column(
        "offer_set_uuid",
        sa.String(UUID_LENGTH),
        sa.ForeignKey("offer_sets.uuid", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("expires", UTCDateTime(), nullable=True),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("modified", UTCDateTime(), nullable=False),
    sa.Column("prepare_start", UTCDateTime(), nullable=False),
    sa.Column("prepare_seconds", sa.Float, nullable=False),
    sa.Column("available_start", UTCDateTime(), nullable=False),
    sa.Column("available_seconds", sa.Float, nullable=False),
    sa.Column("release_seconds", sa.Float, nullable=False),
    # What the session books: [book_start, book_end] for these amounts.
    sa.Column("book_start", UTCDateTime(), nullable=False),
    sa.Column("book_end", UTCDateTime(), nullable=False),
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("memory_gib", sa.Integer, nullable=False),
    sa.Column("storage_gib", sa.Integer, nullable=False),
    # Interactive sessions it books (0 or 1), counted against its account's limit (Skaha's
    # maxInteractiveSessions): per owner in per-user mode, all together otherwise.
    sa.Column("interactive", sa.Integer, nullable=False, server_default="0"),
    sa.Column("connectors", JSONDocument, nullable=False),
    sa.Column("costs", JSONDocument, nullable=True),
    # The lifecycle engine's bookkeeping: when to look at the session next, who is looking
    # (a lease), the decision that the run is over (written once), and a revision that
    # every change to the session, its components or its messages bumps: a worker holding
    # an older view does not undo a user's update, and a cached document is known stale.
    sa.Column("next_due", UTCDateTime(), nullable=True),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("ending", sa.String(16), nullable=True),
    sa.Column("seen", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("warned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    # Cancelled (its phase is final) but still releasing components: its booking holds.
    sa.Column("releasing", sa.Boolean, nullable=False, server_default=sa.false()),
    # Moving earlier when capacity frees up (migration 0015): whether it may, the earliest
    # start its request allows, the start it was offered, and when it was accepted (first
    # come, first served).
    sa.Column("moves_earlier", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("earliest_start", UTCDateTime(), nullable=True),
    sa.Column("promised_start", UTCDateTime(), nullable=True),
    sa.Column("accepted_at", UTCDateTime(), nullable=True),
    sa.Index("ix_sessions_phase_expires", "phase", "expires"),
    # The accepted sessions that have not begun yet (the ones that may move earlier).
    sa.Index("ix_sessions_phase_book_start", "phase", "book_start"),
    sa.Index("ix_sessions_next_due", "next_due"),
    # Listing a user's sessions, and counting their live offers and active sessions (quotas).
    sa.Index("ix_sessions_owner_phase", "owner", "phase", "expires"),
    # Listings, newest first: a user's, and everyone's (migration 0014).
    sa.Index("ix_sessions_owner_created", "owner", "created", "uuid"),
    sa.Index("ix_sessions_created", "created", "uuid"),
    # The planner reads only bookings ending inside [window start, window end + longest
    # booking); the index covers what it sums, so SQLite answers from the index alone.
    # (On PostgreSQL, migration 0006 replaces it with partial indexes of live bookings.)
    sa.Index(
        "ix_sessions_booking",
        "book_end",
        "book_start",
        "phase",
        "expires",
        "cores",
        "memory_gib",
        "storage_gib",
        "uuid",
        "releasing",
        "interactive",
        "owner",
    ),
)

components = sa.Table(
    "components",
    metadata,
    sa.Column("uuid", sa.String(UUID_LENGTH), primary_key=True),
    sa.Column(
        "session_uuid",
        sa.String(UUID_LENGTH),
        sa.ForeignKey("sessions.uuid", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("owner", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("kind", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("spec", JSONDocument, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("modified", UTCDateTime(), nullable=False),
    sa.Column("prepare_start", UTCDateTime(), nullable=False),
    sa.Column("prepare_seconds", sa.Float, nullable=False),
    sa.Column("available_start", UTCDateTime(), nullable=False),
    sa.Column("available_seconds", sa.Float, nullable=False),
    sa.Column("release_seconds", sa.Float, nullable=False),
    # When the engine acts on this component next; what it ends as once released; when its
    # preparing actually began; the executable's exit code.
    sa.Column("due", UTCDateTime(), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    # When the platform was first seen holding it in its queue, and seen admitting it.
    sa.Column("queued_at", UTCDateTime(), nullable=True),
    sa.Column("admitted_at", UTCDateTime(), nullable=True),
)

# Messages are rows, so that appending one is an INSERT on every database. ``subject_uuid``
# is the offer set, session or component the message is about; ``offer_set_uuid`` and
# ``session_uuid`` let a whole offer set or session load its messages in one query.
messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("subject_uuid", sa.String(UUID_LENGTH), nullable=False, index=True),
    sa.Column("session_uuid", sa.String(UUID_LENGTH), nullable=True, index=True),
    sa.Column("offer_set_uuid", sa.String(UUID_LENGTH), nullable=True, index=True),
    sa.Column("time", UTCDateTime(), nullable=False),
    sa.Column("level", sa.String(8), nullable=False),
    sa.Column("kind", sa.String(NAME_LENGTH), nullable=True),
    sa.Column("template", sa.Text, nullable=False),
    sa.Column("values", JSONDocument, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)


# One row per name, rewritten by each /healthz probe: a write that must commit
# (execbroker.storage.health).
heartbeats = sa.Table(
    "heartbeats",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("beat_at", UTCDateTime(), nullable=False),
)


# OIDC names bound to the first ``sub`` seen with each, where a name claim keys owners
# (execbroker.auth.bindings).
name_bindings = sa.Table(
    "name_bindings",
    metadata,
    sa.Column("name", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("subject", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
)


# How long preparing steps took, one row per observation: at most ``estimate_window`` recent
# rows per platform, role, kind and image (execbroker.storage.estimates).
preparing_times = sa.Table(
    "preparing_times",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("platform", sa.String(32), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(NAME_LENGTH), nullable=False),
    sa.Column("image", sa.String(500), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("observed", UTCDateTime(), nullable=False),
    sa.Index("ix_preparing_times_key", "platform", "role", "kind", "image", "id"),
)


# Each user's Skaha tokens in per-user mode, sealed with Fernet by the platform
# (execbroker.platforms.skaha.credentials); deleted when no session of theirs holds.
skaha_credentials = sa.Table(
    "skaha_credentials",
    metadata,
    sa.Column("account", sa.String(NAME_LENGTH), primary_key=True),
    sa.Column("sealed", sa.Text, nullable=False),
    sa.Column("updated", UTCDateTime(), nullable=False),
)
