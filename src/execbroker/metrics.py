"""What the broker counts for Prometheus (``GET /metrics``).

Counters and histograms are per process: with several replicas, scrape each and sum. The
sessions-by-phase gauge is read from the database at scrape time, so every replica reports
the same, whole picture (use ``max`` across replicas, not ``sum``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BACKFILL_GAINED",
    "BACKFILL_MOVES",
    "BACKFILL_SCANS",
    "BOOKINGS",
    "CLAIMS_TAKEN_OVER",
    "ENGINE_PASSES",
    "OFFERS",
    "OFFER_SETS",
    "PLATFORM_CALLS",
    "PLATFORM_CALL_SECONDS",
    "PLATFORM_ERRORS",
    "PLATFORM_SWEPT",
    "PREPARING_ESTIMATE",
    "PREPARING_TIMES",
    "RATE_LIMITED",
    "RETENTION_DELETED",
    "SESSIONS",
    "STEP_DURATION",
    "STEP_LATENESS",
    "TOKEN_REFRESHES",
    "WAITERS_REFUSED",
]

SESSIONS = Gauge(
    "execbroker_sessions", "Sessions (offers included) by phase, from the database", ["phase"]
)
OFFER_SETS = Counter(
    "execbroker_offer_sets_total", "Offer sets answered, by result (YES, NO)", ["result"]
)
OFFERS = Counter(
    "execbroker_offers_total",
    "Offers by what became of them: made, accepted, rejected, expired; direct (sessions run "
    "without an offer); refused (requests answered NO or 4xx because nothing could be offered)",
    ["outcome"],
)
STEP_LATENESS = Histogram(
    "execbroker_step_lateness_seconds",
    "How long after its due time the engine took up a session's step",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
ENGINE_PASSES = Histogram(
    "execbroker_engine_pass_sessions",
    "Sessions the engine took up per pass that found any (its _count is the passes made)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
STEP_DURATION = Histogram(
    "execbroker_step_duration_seconds",
    "How long one session's step took (platform calls included)",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
PLATFORM_CALLS = Counter(
    "execbroker_platform_calls_total", "Calls to the platform", ["platform", "endpoint"]
)
PLATFORM_ERRORS = Counter(
    "execbroker_platform_errors_total",
    "Platform calls that raised (the step is retried or the component fails)",
    ["platform", "endpoint"],
)
PLATFORM_CALL_SECONDS = Histogram(
    "execbroker_platform_call_seconds",
    "How long platform calls took",
    ["platform", "endpoint"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
PLATFORM_SWEPT = Counter(
    "execbroker_platform_swept_total",
    "Platform objects of the broker's that the broker deleted because no live component "
    "owned them (orphan) or they duplicated a live component's (duplicate)",
    ["platform", "reason"],
)
TOKEN_REFRESHES = Counter(
    "execbroker_token_refreshes_total",
    "Platform credential refreshes, by outcome (ok, failed, invalid_grant)",
    ["platform", "outcome"],
)
LATE_STEPS = Counter(
    "execbroker_engine_late_steps_total",
    "Engine steps that outlived their pass's step deadline (a slow platform call) and "
    "committed on their own, without holding up the other sessions of the pass",
)
BOOKINGS = Counter(
    "execbroker_bookings_total",
    "Booking transactions (offers, direct runs, extensions), by how they were settled: "
    "locked (under the pool's lock throughout: SQLite), optimistic (PostgreSQL: only the "
    "final check held the lock), relocked (an optimistic attempt run again under the lock)",
    ["path"],
)
CLAIMS_TAKEN_OVER = Counter(
    "execbroker_claims_taken_over_total",
    "Sessions claimed after another worker's lease ran out (that worker died or stalled)",
)
RETENTION_DELETED = Counter(
    "execbroker_retention_deleted_total",
    "Records the retention job deleted because they ended longer ago than the retention "
    "(offer_set: an offer set with its offers; session: a session, offer or direct run)",
    ["record"],
)
RATE_LIMITED = Counter(
    "execbroker_rate_limited_total",
    "Anonymous requests answered 429 because their address exceeded its rate",
)
WAITERS_REFUSED = Counter(
    "execbroker_waiters_refused_total",
    "Long-polls and event streams answered 429 because their user held the most allowed",
)
PREPARING_TIMES = Histogram(
    "execbroker_preparing_seconds",
    "How long preparing steps took, from their preparing start to available (the learned "
    "estimates' observations; its _count counts them), by platform, role and short kind",
    ["platform", "role", "kind"],
    buckets=(0.1, 1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
PREPARING_ESTIMATE = Gauge(
    "execbroker_preparing_estimate_seconds",
    "The learned preparing estimate the planner plans with now (the configured percentile of "
    "recent history), for the keys with the most observations (at most 20: the image label "
    "stays bounded); a key with too few observations is planned with the defaults, not shown",
    ["platform", "role", "kind", "image"],
)
BACKFILL_MOVES = Counter(
    "execbroker_backfill_moves_total",
    "Accepted sessions moved to an earlier start because capacity freed up (issue 19)",
)
BACKFILL_GAINED = Histogram(
    "execbroker_backfill_gained_seconds",
    "How much earlier each moved session starts than it did before the move",
    buckets=(1, 5, 10, 30, 60, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400),
)
BACKFILL_SCANS = Counter(
    "execbroker_backfill_scans_total",
    "Backfill passes that looked for sessions to move, by what they found: none (no session "
    "waited that could move; no lock taken), looked (the calendar was read under the lock)",
    ["outcome"],
)
