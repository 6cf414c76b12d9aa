"""What one HTTP call costs the broker, as a ratio to a bare FastAPI app on the same server.

Starts, in one run, two servers on free loopback ports, both through ``execbroker serve``'s
own uvicorn call (same HTTP protocol, event loop, logging and keep-alive settings, one
worker): the floor, a FastAPI app with one no-op ``GET`` that returns a small JSON document;
and the broker (SQLite in a temporary directory, the mock platform, a very large pool).
Drives each call with ``wrk`` (one thread, ``--connections`` connections, ``--duration``
seconds after ``--warmup`` seconds of warm-up; Lua scripts carry the headers and bodies) and
prints requests/s, p50 and p99 of each, and requests/s as a ratio to the floor's, with the
targets of issue 18:

- unknown path (404) and a token refused (401): ratio ≥ 0.6;
- ``GET /healthz``: ≥ 0.5;
- authenticated ``GET /sessions/{uuid}`` of a session with 4 components and 10 messages:
  ≥ 0.25;
- ``GET /sessions?last=20`` with ``--sessions`` (100,000) sessions stored: p50 at most 1.2 x
  its p50 with none stored (both brokers run together and the two listings are measured in
  turns, three rounds each: the median of each round's ratio);
- ``POST /requests`` (the notebook example, 4 offers): ≥ 0.06;
- ``bench/lifecycle.py``'s load (``--lifecycle-sessions``, 10,000): completed sessions/s ≥
  0.04 x the floor's requests/s, and the broker's peak RSS under 300 MiB;
- every call: p99 < 4 x p50.

    .venv/bin/python bench/http_bench.py
    .venv/bin/python bench/http_bench.py --duration 5 --only floor,healthz,get-session --sessions 1

See bench/README.md for what each row does and how the database is preloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.lifecycle import LifecycleRun, zero_delay_env
from bench.lifecycle import measure as lifecycle_measure
from bench.offers import CENTRE, EXPECTED_OFFERS, MINUTE, POOL, REQUEST, SPREAD, revision
from tests.support.live import LiveBroker, free_port
from tests.support.wire import example

from execbroker.storage import tables
from execbroker.storage.database import Database

# --------------------------------------------------------------------------- the rows

FLOOR = "floor"
NOT_FOUND = "404"
REFUSED = "401"
HEALTHZ = "healthz"
GET_SESSION = "get-session"
LIST_EMPTY = "list-empty"
LIST_FULL = "list-full"
POST_REQUESTS = "post-requests"
LIFECYCLE = "lifecycle"
ROWS = (
    FLOOR,
    NOT_FOUND,
    REFUSED,
    HEALTHZ,
    GET_SESSION,
    LIST_EMPTY,
    LIST_FULL,
    POST_REQUESTS,
    LIFECYCLE,
)
# Requests/s (sessions/s for the lifecycle) as a ratio to the floor's, at least.
RATIO_TARGETS = {
    NOT_FOUND: 0.6,
    REFUSED: 0.6,
    HEALTHZ: 0.5,
    GET_SESSION: 0.25,
    POST_REQUESTS: 0.06,
    LIFECYCLE: 0.04,
}
LIST_GROWTH_TARGET = 1.2  # p50 with the preload / p50 with none, at most
LISTING_ROUNDS = 3  # turns of each listing, measured alternately
STORED_ROWS = (NOT_FOUND, REFUSED, HEALTHZ, GET_SESSION, LIST_FULL)
BROKER_ROWS = (LIST_EMPTY, POST_REQUESTS, *STORED_ROWS)
TAIL_TARGET = 4.0  # p99 / p50, under
RSS_TARGET_MIB = 300.0

LISTING = "/sessions?last=20"
# The history preloaded for the listing is spread over this much time before the run (well
# inside the default 30-day retention, so the broker's retention job leaves it alone).
HISTORY = dt.timedelta(days=20)
PRELOAD_BATCH = 5000  # sessions per transaction
WINDOWS = 5000  # distinct start intervals the POST /requests script cycles through

# The broker under test: the offers bench's very large pool (every request gets its 4
# offers), quotas out of the way of a user who holds 100,000 sessions and thousands of live
# offers, and the anonymous rate limit out of the way of wrk's unauthenticated calls
# (/healthz, 404, 401 answer 429 past 20/s by default: that would measure the 429).
BROKER_ENV = {
    **POOL,
    "EXECBROKER_LOG_LEVEL": "WARNING",
    "EXECBROKER_QUOTA_STORED_RECORDS": "1000000000",
    "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "1000000",
    "EXECBROKER_ANONYMOUS_RATE": "1000000000",
    "EXECBROKER_ANONYMOUS_BURST": "1000000000",
}


# --------------------------------------------------------------------------- processes


class BenchBroker(LiveBroker):
    """``execbroker serve`` in a process group of its own, killed whole when it stops."""

    def _spawn(self) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "EXECBROKER_DATA_DIR": str(self.data_dir), **self.env}
        with self.log.open("ab") as log:
            return subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "-m", "execbroker", "serve", "--port", str(self.port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        super().stop()
        if self.process is not None:
            _kill_group(self.process)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


@contextlib.contextmanager
def floor_server(directory: Path) -> Iterator[str]:
    """The floor: this script's ``--serve-floor`` in a process group of its own; its URL."""
    directory.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = directory / "floor.log"
    environment = {
        **os.environ,
        "EXECBROKER_DATA_DIR": str(directory),
        "EXECBROKER_LOG_LEVEL": "WARNING",
    }
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - this interpreter and this script
            [sys.executable, str(Path(__file__).resolve()), "--serve-floor", str(port)],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the floor server exited:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                answer = httpx.get(f"{url}/noop", timeout=1)
                if answer.status_code == 200 and answer.json() == {"ok": True}:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the floor server did not answer:\n{log.read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        _kill_group(process)


def serve_floor(port: int) -> None:
    """Run the floor app through ``execbroker serve`` itself, so that every uvicorn option
    (protocol class, loop, logging, keep-alive) is the broker's; only the app differs.
    Storage and token checks run on the floor's own scratch directory first, as they do
    for the broker.
    """
    from fastapi import FastAPI  # noqa: PLC0415 - the floor's process only

    import execbroker.main  # noqa: PLC0415
    from execbroker.cli import server  # noqa: PLC0415

    app = FastAPI()

    @app.get("/noop")
    async def noop() -> dict[str, bool]:
        return {"ok": True}

    def bare_app(*_args: Any, **_kwargs: Any) -> FastAPI:
        return app

    # serve() builds its app through this name (imported inside the function, or at the top
    # of the module if that ever moves).
    execbroker.main.create_app = bare_app
    if hasattr(server, "create_app"):
        server.create_app = bare_app
    server.serve(host="127.0.0.1", port=port)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkRun:
    """One measured wrk run: counts, rates and latencies (microseconds)."""

    requests: int
    seconds: float
    p50_us: float
    p99_us: float
    bad_status: int  # answers not 2xx or 3xx
    socket_errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


# wrk calls done() once at the end: the summary as one JSON line (exact percentiles, in µs).
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"status": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text reads as a Lua string


def get_script(directory: Path, name: str, headers: dict[str, str]) -> Path:
    """A wrk script for a GET of the URL given on wrk's command line, with ``headers``."""
    lines = ['wrk.method = "GET"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


def post_script(
    directory: Path, name: str, headers: dict[str, str], *, target: str, bodies: list[str]
) -> Path:
    """A wrk script that POSTs ``bodies`` to ``target`` in turn, with ``headers``."""
    lines = ['wrk.method = "POST"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    lines.append("local bodies = {")
    lines += [f"  {_lua_string(body)}," for body in bodies]
    lines.append("}")
    lines.append("local n = 0")
    lines.append("request = function()")
    lines.append("  n = n + 1")
    lines.append(f"  return wrk.format(nil, {_lua_string(target)}, nil, bodies[(n % #bodies) + 1])")
    lines.append("end")
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + _DONE)
    return path


@dataclass(frozen=True)
class Load:
    """How wrk drives each call."""

    seconds: float
    warmup: float
    connections: int
    threads: int


def run_wrk(url: str, script: Path, seconds: float, load: Load) -> WrkRun:
    command = [
        "wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(  # noqa: S603 - wrk with fixed arguments
        command, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    found = re.search(r"^WRK-RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    result = json.loads(found[1])
    return WrkRun(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50_us=result["p50_us"],
        p99_us=result["p99_us"],
        bad_status=result["status"],
        socket_errors=result["connect"] + result["read"] + result["write"] + result["timeout"],
    )


def drive(url: str, script: Path, load: Load, *, expect_errors: bool = False) -> WrkRun:
    """Warm up, then measure; the answers must all be 2xx/3xx (all not, if
    ``expect_errors``), without socket errors."""
    if load.warmup > 0:
        run_wrk(url, script, load.warmup, load)
    measured = run_wrk(url, script, load.seconds, load)
    wrong = measured.requests - measured.bad_status if expect_errors else measured.bad_status
    if wrong or measured.socket_errors:
        raise RuntimeError(
            f"{url}: {wrong} of {measured.requests} answers had an unexpected status, "
            f"{measured.socket_errors} socket errors"
        )
    return measured


# --------------------------------------------------------------------------- the session


@dataclass
class Template:
    """A real session's rows, read back from the broker that ran it: the session, its
    components, and (in order) the messages kept for the bench."""

    session: dict[str, Any]
    components: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    all_messages: int


def _session_request() -> dict[str, Any]:
    """The container-with-data example without its volume mounts: 4 components
    (executable, compute, one storage, one data)."""
    document: dict[str, Any] = example("container-with-data-request.yaml")
    document["compute"].pop("volumes", None)
    return document


def real_session(directory: Path) -> Template:
    """Run one direct session to COMPLETED on a zero-delay broker of its own and read back
    its rows. The messages kept are each subject's first and last (for the session and
    its 4 components: 10), the count the issue names."""
    directory.mkdir()
    with (
        BenchBroker(data_dir=directory, env=zero_delay_env(10)) as broker,
        broker.client() as client,
    ):
        answer = client.post("/direct", json=_session_request())
        if answer.status_code != 303:
            raise RuntimeError(f"the direct session was refused: {answer.text[:500]}")
        location = answer.headers["location"]
        deadline = time.monotonic() + 120
        while True:
            phase = client.get(location, params={"wait": 5}).json()["phase"]
            if phase in {"COMPLETED", "FAILED", "CANCELLED"}:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the direct session is still {phase}")
        if phase != "COMPLETED":
            raise RuntimeError(f"the direct session ended {phase}")
    session_uuid = location.rstrip("/").rsplit("/", 1)[-1]
    engine = sa.create_engine(f"sqlite:///{directory / 'execbroker.db'}")
    try:
        with engine.connect() as connection:
            session = connection.execute(
                sa.select(tables.sessions).where(tables.sessions.c.uuid == session_uuid)
            ).one()
            parts = connection.execute(
                sa.select(tables.components)
                .where(tables.components.c.session_uuid == session_uuid)
                .order_by(tables.components.c.role, tables.components.c.position)
            ).all()
            notes = connection.execute(
                sa.select(tables.messages)
                .where(tables.messages.c.session_uuid == session_uuid)
                .order_by(tables.messages.c.id)
            ).all()
    finally:
        engine.dispose()
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for note in notes:
        row = dict(note._mapping)
        del row["id"]
        by_subject[row["subject_uuid"]].append(row)
    kept = [row for rows in by_subject.values() for row in (rows[:1] + rows[1:][-1:])]
    kept.sort(key=lambda row: row["time"])
    return Template(
        session=dict(session._mapping),
        components=[dict(part._mapping) for part in parts],
        messages=kept,
        all_messages=len(notes),
    )


def _moved(row: dict[str, Any], shift: dt.timedelta) -> dict[str, Any]:
    return {k: v + shift if isinstance(v, dt.datetime) else v for k, v in row.items()}


async def _migrate(url: str) -> None:
    database = Database(url)
    try:
        await database.migrate()
    finally:
        await database.dispose()


def _copy_of(
    table: sa.Table, template: sa.Table, renamed: dict[str, sa.ColumnElement[Any]]
) -> tuple[list[str], list[sa.ColumnElement[Any]]]:
    """The columns of ``table`` and, for each, what a copy of a ``template`` row (joined to
    ``_COPIES``) puts there: the renamed UUID, the time moved back by the copy's shift, or
    the template's value."""
    shift = sa.func.printf("-%d seconds", _COPIES.c.shift)
    names, values = [], []
    for column in table.columns:
        if column.name == "id":
            continue  # the message's own key: a new one
        source = template.c[column.name]
        if column.name in renamed:
            value = renamed[column.name]
        elif isinstance(column.type, tables.UTCDateTime):
            # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff': whole seconds back, same fraction.
            value = sa.func.strftime("%Y-%m-%d %H:%M:%S", source, shift).concat(
                sa.func.substr(source, 20)
            )
        else:
            value = source
        names.append(column.name)
        values.append(value)
    return names, values


_COPIES = sa.Table(
    "bench_copies",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("shift", sa.Integer, nullable=False),
    sa.Column("session", sa.String),
    *(sa.Column(f"part{index}", sa.String) for index in range(16)),
    prefixes=["TEMPORARY"],
)


def _template_table(name: str) -> sa.Table:
    """A temporary table holding the template's rows of ``name``, same columns."""
    return sa.Table(
        f"bench_template_{name}",
        sa.MetaData(),
        *(sa.Column(column.name) for column in tables.metadata.tables[name].columns),
    )


def preload(data_dir: Path, template: Template, count: int) -> tuple[float, float]:
    """A fresh database in ``data_dir`` with ``count`` sessions like the template: the
    template itself, newest (its times moved to now), then copies under new UUIDs, each
    further back in time, spread over ``HISTORY``. Returns the seconds it took, and the
    seconds of CPU.

    The schema comes from the broker's migrations; the template's rows go in through
    SQLAlchemy Core as the broker writes them; the copies are made by the database, with
    ``INSERT … SELECT`` from the template's rows joined to a table of (shift, new UUIDs),
    in transactions of ``PRELOAD_BATCH`` sessions, with the three tables' secondary indexes
    dropped meanwhile and then created again from their own SQL (``sqlite_master``). The
    journal and syncing are off meanwhile: the file is scratch, and the broker sets its own
    pragmas when it opens it."""
    started, cpu = time.perf_counter(), time.process_time()
    database = data_dir / "execbroker.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{database}"))
    to_now = dt.datetime.now(dt.UTC) - template.session["created"]
    step = max(1, int(HISTORY.total_seconds()) // max(count, 1))
    session_uuid = template.session["uuid"]
    part_uuids = [part["uuid"] for part in template.components]
    if len(part_uuids) > len(_COPIES.c) - 3:
        raise RuntimeError(f"{len(part_uuids)} components: more than the copies table holds")
    names = ("sessions", "components", "messages")
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144"):
                connection.exec_driver_sql(f"PRAGMA {pragma}")
            connection.execute(tables.sessions.insert(), [_moved(template.session, to_now)])
            connection.execute(
                tables.components.insert(), [_moved(part, to_now) for part in template.components]
            )
            connection.execute(
                tables.messages.insert(), [_moved(note, to_now) for note in template.messages]
            )
            for name in names:
                table = tables.metadata.tables[name]
                key = table.c.uuid if name == "sessions" else table.c.session_uuid
                connection.exec_driver_sql(
                    f"CREATE TEMPORARY TABLE bench_template_{name} AS "  # noqa: S608 - names
                    f"SELECT * FROM {name} WHERE {key.name} = ?",
                    (session_uuid,),
                )
            indexes = connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                "AND tbl_name IN ('sessions', 'components', 'messages')"
            ).all()
            for name, _ in indexes:
                connection.exec_driver_sql(f'DROP INDEX "{name}"')
            _COPIES.create(connection)
            connection.execute(
                _COPIES.insert(),
                [
                    {
                        "n": n,
                        "shift": n * step,
                        "session": str(uuid.uuid4()),
                        **{f"part{i}": str(uuid.uuid4()) for i in range(len(part_uuids))},
                    }
                    for n in range(1, count)
                ],
            )
            connection.commit()
            sources = {name: _template_table(name) for name in names}
            parts = {old: _COPIES.c[f"part{i}"] for i, old in enumerate(part_uuids)}
            renamed: dict[str, dict[str, sa.ColumnElement[Any]]] = {
                "sessions": {"uuid": _COPIES.c.session},
                "components": {
                    "uuid": sa.case(parts, value=sources["components"].c.uuid),
                    "session_uuid": _COPIES.c.session,
                },
                "messages": {
                    "subject_uuid": sa.case(
                        {session_uuid: _COPIES.c.session, **parts},
                        value=sources["messages"].c.subject_uuid,
                    ),
                    "session_uuid": _COPIES.c.session,
                },
            }
            for first in range(1, count, PRELOAD_BATCH):
                for name in names:
                    table = tables.metadata.tables[name]
                    columns, values = _copy_of(table, sources[name], renamed[name])
                    chosen = (
                        sa.select(*values)
                        .select_from(sources[name].join(_COPIES, sa.true()))  # every pairing
                        .where(_COPIES.c.n >= first, _COPIES.c.n < first + PRELOAD_BATCH)
                    )
                    connection.execute(table.insert().from_select(columns, chosen))
                connection.commit()
            for _, sql in indexes:
                connection.exec_driver_sql(sql)
            connection.commit()
    finally:
        engine.dispose()
    return time.perf_counter() - started, time.process_time() - cpu


# --------------------------------------------------------------------------- the run


@dataclass
class Row:
    """One line of the table."""

    name: str
    call: str
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    tail_ok: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _row(name: str, call: str, run: WrkRun) -> Row:
    p50, p99 = run.p50_us / 1000, run.p99_us / 1000
    return Row(
        name=name,
        call=call,
        rate=run.rate,
        p50_ms=p50,
        p99_ms=p99,
        tail_ok=p99 < TAIL_TARGET * p50,
        extra={"requests": run.requests, "seconds": run.seconds},
    )


def _median_row(name: str, call: str, runs: list[WrkRun]) -> Row:
    """One row from several runs of the same call: the median rate, p50 and p99."""
    rate = statistics.median(run.rate for run in runs)
    p50 = statistics.median(run.p50_us for run in runs) / 1000
    p99 = statistics.median(run.p99_us for run in runs) / 1000
    return Row(
        name=name,
        call=call,
        rate=rate,
        p50_ms=p50,
        p99_ms=p99,
        tail_ok=all(run.p99_us < TAIL_TARGET * run.p50_us for run in runs),
        extra={
            "requests": sum(run.requests for run in runs),
            "seconds": sum(run.seconds for run in runs),
            "rounds": len(runs),
        },
    )


def _auth(broker: BenchBroker) -> dict[str, str]:
    return {"Authorization": broker.headers["Authorization"]}


def _check(answer: httpx.Response, status: int, what: str) -> httpx.Response:
    if answer.status_code != status:
        raise RuntimeError(f"{what}: expected {status}, got {answer.status_code}: {answer.text}")
    return answer


def _rate_limited(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(r"^execbroker_rate_limited_total (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _windows(count: int, seed: int) -> list[str]:
    """``count`` start intervals of 3 hours, at random minutes within ±25 days of the
    notebook example's (as ``bench/offers.py`` spreads them): live offers hold capacity for
    their TTL, and in one shared window each request would plan against all of them."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    margin = (SPREAD - dt.timedelta(days=5)) // MINUTE
    return [
        f"{CENTRE + rng.randint(-margin, margin) * MINUTE:%Y-%m-%dT%H:%M:%SZ}/PT3H"
        for _ in range(count)
    ]


class Bench:
    """The run: floor, broker phases, lifecycle; rows as they are measured."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.args = args
        self.scratch = scratch
        self.scripts = scratch / "lua"
        self.scripts.mkdir()
        self.only: set[str] = set(args.only)
        self.load = Load(args.duration, args.warmup, args.connections, args.threads)
        self.rows: dict[str, Row] = {}
        self.floors: list[WrkRun] = []
        self.notes: list[str] = []

    def wanted(self, *names: str) -> bool:
        return any(name in self.only for name in names)

    def measure_floor(self, url: str) -> None:
        script = get_script(self.scripts, "floor", {})
        self.floors.append(drive(f"{url}/noop", script, self.load))
        print(
            f"  floor: {self.floors[-1].rate:,.0f} req/s (measurement {len(self.floors)})",
            flush=True,
        )

    def add(self, row: Row) -> None:
        self.rows[row.name] = row
        if row.rate is not None:
            latency = (
                "" if row.p50_ms is None else f", p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.2f} ms"
            )
            print(f"  {row.name}: {row.rate:,.1f}/s{latency}  {row.note}".rstrip(), flush=True)

    def attempt(self, names: tuple[str, ...], action: Callable[[], None]) -> None:
        """Run ``action``, which measures the rows ``names``; if it fails, those of them not
        measured yet are reported failed, and the run goes on with the next."""
        try:
            action()
        except Exception as failure:  # reported in the table; the run goes on
            text = f"{type(failure).__name__}: {failure}"
            print(f"  {', '.join(names)} failed: {text}", flush=True)
            self.notes.append(f"{', '.join(names)} failed: {text}")
            for name in names:
                if name not in self.rows and self.wanted(name):
                    first = text.splitlines()[0][:120]
                    self.rows[name] = Row(name=name, call="(failed)", passed=False, note=first)

    def call(
        self,
        name: str,
        call: str,
        url: str,
        headers: dict[str, str],
        *,
        expect_errors: bool = False,
        note: str = "",
    ) -> None:
        """Measure one GET of ``url`` with wrk."""
        script = get_script(self.scripts, name, headers)
        row = _row(name, call, drive(url, script, self.load, expect_errors=expect_errors))
        row.note = note
        self.add(row)

    # ------------------------------------------------------------------ the two brokers

    def brokers(self) -> None:
        """Two brokers alive together, one on an empty database and one on the preloaded
        history. The two listings are measured in turns, :data:`LISTING_ROUNDS` of each, so
        that the machine's drift from minute to minute falls on both alike (measured one
        after the other, minutes apart, their p50s differed by up to a third either way
        with nothing changed). Then the stored broker's other rows, then ``POST /requests``
        on the empty broker (its offers would show in the empty listing).
        """
        stored_dir: Path | None = None
        template: Template | None = None
        if self.wanted(*STORED_ROWS):
            template, stored_dir = self._preload()
        with contextlib.ExitStack() as stack:
            empty: BenchBroker | None = None
            stored: BenchBroker | None = None
            if self.wanted(LIST_EMPTY, POST_REQUESTS):
                empty_dir = self.scratch / "empty"
                empty_dir.mkdir()
                empty = BenchBroker(data_dir=empty_dir, env=BROKER_ENV)
                stack.enter_context(empty)
            if stored_dir is not None:
                stored = BenchBroker(data_dir=stored_dir, env=BROKER_ENV)
                stack.enter_context(stored)
            before = _rate_limited(stored.url) if stored is not None else 0.0
            listings = [name for name in (LIST_EMPTY, LIST_FULL) if self.wanted(name)]
            if listings:
                self.attempt(tuple(listings), lambda: self._listings(empty, stored))
            if stored is not None and template is not None:
                self._stored_rows(stored, template)
                limited = _rate_limited(stored.url) - before
                if limited:
                    raise RuntimeError(f"{limited:.0f} calls were answered 429: raise the rate")
            if empty is not None and self.wanted(POST_REQUESTS):
                auth = _auth(empty)
                self.attempt((POST_REQUESTS,), lambda: self._post_requests(empty.url, auth))

    def _preload(self) -> tuple[Template, Path]:
        started = time.perf_counter()
        template = real_session(self.scratch / "template")
        print(
            f"  one real session run to COMPLETED in {time.perf_counter() - started:.1f} s: "
            f"{len(template.components)} components, {template.all_messages} messages "
            f"(the bench keeps {len(template.messages)})",
            flush=True,
        )
        count = max(1, self.args.sessions)
        stored = self.scratch / "stored"
        stored.mkdir()
        seconds, cpu = preload(stored, template, count)
        loaded = f"preloaded {count:,} sessions in {seconds:.1f} s ({cpu:.1f} s of CPU)"
        print(f"  {loaded}", flush=True)
        self.notes.append(loaded)
        return template, stored

    def _listings(self, empty: BenchBroker | None, stored: BenchBroker | None) -> None:
        """``GET /sessions?last=20`` on each broker, in turns; each row gives the median of
        its rounds, and the growth is the median of each round's p50 over the empty one's."""
        targets: dict[str, tuple[str, str, dict[str, str], str]] = {}
        if empty is not None and self.wanted(LIST_EMPTY):
            with empty.client() as client:
                listed = _check(client.get(LISTING), 200, "the empty listing").json()
            if listed["sessions"]:
                raise RuntimeError(f"the empty listing lists {len(listed['sessions'])}")
            call = f"GET {LISTING}, 0 sessions stored"
            targets[LIST_EMPTY] = (call, f"{empty.url}{LISTING}", _auth(empty), "")
        if stored is not None and self.wanted(LIST_FULL):
            with stored.client() as client:
                listed = _check(client.get(LISTING), 200, "the listing").json()
            call = f"GET {LISTING}, {max(1, self.args.sessions):,} sessions stored"
            note = f"({len(listed['sessions'])} listed)"
            targets[LIST_FULL] = (call, f"{stored.url}{LISTING}", _auth(stored), note)
        runs: dict[str, list[WrkRun]] = defaultdict(list)
        for _ in range(LISTING_ROUNDS):
            for name, (_, url, headers, _) in targets.items():
                runs[name].append(drive(url, get_script(self.scripts, name, headers), self.load))
        for name, (call, _, _, note) in targets.items():
            row = _median_row(name, call, runs[name])
            row.note = note
            self.add(row)
        if LIST_EMPTY in targets and LIST_FULL in targets:
            rounds = [
                full.p50_us / empty_run.p50_us
                for full, empty_run in zip(runs[LIST_FULL], runs[LIST_EMPTY], strict=True)
            ]
            self.rows[LIST_FULL].extra["growth_rounds"] = rounds

    def _post_requests(self, url: str, auth: dict[str, str]) -> None:
        document = example(REQUEST)
        marker = "@@START@@"
        document["schedule"]["requested"]["start"] = marker
        prefix, suffix = json.dumps(document).split(json.dumps(marker))
        bodies = [f'{prefix}"{start}"{suffix}' for start in _windows(WINDOWS, seed=18)]
        with httpx.Client(base_url=url, headers=auth, timeout=60) as client:
            answer = client.post(
                "/requests", content=bodies[-1], headers={"Content-Type": "application/json"}
            )
            offers = _check(answer, 303, "POST /requests").json().get("offers", [])
        if len(offers) != EXPECTED_OFFERS:
            raise RuntimeError(f"POST /requests got {len(offers)} offers: {answer.text[:500]}")
        headers = {**auth, "Content-Type": "application/json"}
        script = post_script(
            self.scripts, POST_REQUESTS, headers, target="/requests", bodies=bodies
        )
        run = drive(f"{url}/requests", script, self.load)
        self.add(_row(POST_REQUESTS, f"POST /requests ({REQUEST}, 4 offers)", run))

    def _stored_rows(self, broker: BenchBroker, template: Template) -> None:
        """The cheap paths on the preloaded broker, and reading its newest session."""
        url = broker.url
        auth = _auth(broker)
        session = f"/sessions/{template.session['uuid']}"
        # A token of the right shape that the tokens file does not hold.
        wrong = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}

        def not_found() -> None:
            _check(httpx.get(f"{url}/no/such/path"), 404, "an unknown path")
            call = "GET an unknown path (404), no token"
            self.call(NOT_FOUND, call, f"{url}/no/such/path", {}, expect_errors=True)

        def refused() -> None:
            _check(httpx.get(f"{url}{session}", headers=wrong), 401, "a wrong token")
            call = "GET /sessions/{uuid} with a wrong token (401)"
            self.call(REFUSED, call, f"{url}{session}", wrong, expect_errors=True)

        def healthz() -> None:
            _check(httpx.get(f"{url}/healthz"), 200, "GET /healthz")
            self.call(HEALTHZ, "GET /healthz, no token", f"{url}/healthz", {})

        def get_session() -> None:
            with broker.client() as client:
                read = _check(client.get(session), 200, "the session").json()
            call = "GET /sessions/{uuid}, authenticated"
            self.call(GET_SESSION, call, f"{url}{session}", auth, note=f"({_shape(read)})")

        rows = {NOT_FOUND: not_found, REFUSED: refused, HEALTHZ: healthz, GET_SESSION: get_session}
        for name, action in rows.items():
            if self.wanted(name):
                self.attempt((name,), action)

    # ------------------------------------------------------------------ lifecycle

    def lifecycle(self) -> None:
        count = self.args.lifecycle_sessions
        print(f"  lifecycle: {count:,} zero-delay sessions ...", flush=True)
        result: LifecycleRun = lifecycle_measure(count, self.args.lifecycle_clients, 0.0, 1800)
        lateness = sorted(result.lateness)
        row = Row(
            name=LIFECYCLE,
            call=f"bench/lifecycle.py, {count:,} sessions: completed/s",
            rate=result.rate,
            note=(
                f"(not COMPLETED {result.not_completed}; lateness p50 "
                f"{_quantile(lateness, 0.5):.3f} s, p99 {_quantile(lateness, 0.99):.3f} s)"
            ),
            extra={
                "completed": result.completed,
                "seconds": result.finished_seconds,
                "peak_rss_mib": result.peak_rss_mib,
                "not_completed": result.not_completed,
            },
        )
        self.add(row)
        self.rows["rss"] = Row(
            name="rss",
            call=f"peak broker RSS (VmHWM), {count:,}-session lifecycle run",
            target=f"< {RSS_TARGET_MIB:.0f} MiB",
            passed=result.peak_rss_mib < RSS_TARGET_MIB,
            note=f"{result.peak_rss_mib:.0f} MiB",
            extra={"peak_rss_mib": result.peak_rss_mib},
        )
        if result.not_completed:
            self.notes.append(f"lifecycle: {result.not_completed} sessions did not complete")

    # ------------------------------------------------------------------ all of it

    def run(self) -> None:
        with floor_server(self.scratch / "floor") as floor:
            self.measure_floor(floor)
            if self.wanted(*BROKER_ROWS):
                self.attempt(BROKER_ROWS, self.brokers)
                self.measure_floor(floor)
        if self.wanted(LIFECYCLE):
            self.attempt((LIFECYCLE, "rss"), self.lifecycle)
        self._judge()

    @property
    def floor_rate(self) -> float:
        return statistics.fmean(run.rate for run in self.floors)

    def _judge(self) -> None:
        floor = self.floor_rate
        p50s = [run.p50_us / 1000 for run in self.floors]
        p99s = [run.p99_us / 1000 for run in self.floors]
        self.rows = {
            FLOOR: Row(
                name=FLOOR,
                call="bare FastAPI no-op GET, same uvicorn options",
                rate=floor,
                p50_ms=statistics.fmean(p50s),
                p99_ms=statistics.fmean(p99s),
                ratio=1.0,
                tail_ok=all(p99 < TAIL_TARGET * p50 for p50, p99 in zip(p50s, p99s, strict=True)),
                note="(" + ", ".join(f"{run.rate:,.0f}" for run in self.floors) + " req/s)",
            ),
            **self.rows,
        }
        for row in self.rows.values():
            if row.rate is not None and row.name != FLOOR:
                row.ratio = row.rate / floor
            if row.name in RATIO_TARGETS and row.ratio is not None:
                row.target = f"≥ {RATIO_TARGETS[row.name]}"
                row.passed = row.ratio >= RATIO_TARGETS[row.name]
        order = [*ROWS, "rss"]
        self.rows = dict(sorted(self.rows.items(), key=lambda item: order.index(item[0])))
        full = self.rows.get(LIST_FULL)
        rounds = full.extra.get("growth_rounds") if full else None
        if full and rounds:
            growth = statistics.median(rounds)
            full.target = f"p50 ≤ {LIST_GROWTH_TARGET} x list-empty's"
            full.passed = growth <= LIST_GROWTH_TARGET
            each = ", ".join(f"{r:.2f}" for r in rounds)
            full.note = f"{full.note} (p50 x {growth:.2f}, median of rounds {each})".strip()


def _shape(session: dict[str, Any]) -> str:
    """How many components and messages a session document carries."""
    parts = [session.get("executable"), session.get("compute")]
    parts += session.get("storage") or []
    parts += session.get("data") or []
    present = [part for part in parts if part]
    mounts = len((session.get("compute") or {}).get("volumes") or [])
    messages = len(session["meta"].get("messages", []))
    messages += sum(len(part["meta"].get("messages", [])) for part in present)
    return f"{len(present)} components (+{mounts} volume mount), {messages} messages"


def _quantile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --------------------------------------------------------------------------- reporting


def _verdict(value: bool | None) -> str:  # noqa: FBT001 - a table cell
    return "—" if value is None else ("PASS" if value else "FAIL")


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def report(bench: Bench) -> tuple[int, int]:
    """Print the table; the PASS and FAIL counts."""
    table = [
        (
            "row",
            "call",
            "req/s",
            "p50 ms",
            "p99 ms",
            "ratio",
            "target",
            "verdict",
            "p99 < 4 p50",
            "note",
        )
    ]
    table += [
        (
            row.name,
            row.call,
            _number(row.rate, ",.1f"),
            _number(row.p50_ms, ".2f"),
            _number(row.p99_ms, ".2f"),
            _number(row.ratio, ".3f"),
            row.target or "—",
            _verdict(row.passed),
            _verdict(row.tail_ok),
            row.note,
        )
        for row in bench.rows.values()
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    numeric = {2, 3, 4, 5}
    print()
    for number, line in enumerate(table):
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        print(" | ".join(cells).rstrip())
        if number == 0:
            print(
                " | ".join(
                    "-" * (width - 1) + ":" if column in numeric else "-" * width
                    for column, width in enumerate(widths)
                )
            )
    verdicts = [row.passed for row in bench.rows.values()]
    verdicts += [row.tail_ok for row in bench.rows.values()]
    passed = sum(1 for v in verdicts if v is True)
    failed = sum(1 for v in verdicts if v is False)
    print()
    for note in bench.notes:
        print(note)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{passed} PASS, {failed} FAIL")
    return passed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per call")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per call")
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=list(ROWS),
        help=f"comma-separated rows (default all): {', '.join(ROWS)}; the floor always runs",
    )
    parser.add_argument(
        "--sessions", type=int, default=100_000, help="sessions preloaded for list-full"
    )
    parser.add_argument(
        "--lifecycle-sessions", type=int, default=10_000, help="sessions of the lifecycle row"
    )
    parser.add_argument("--lifecycle-clients", type=int, default=16)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor is not None:
        serve_floor(args.serve_floor)
        return
    unknown = set(args.only) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; the rows are {', '.join(ROWS)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    # A SIGTERM ends the run through the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    print(
        f"execbroker bench/http_bench.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  "
        f"Python {platform.python_version()}  {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores (wrk and the servers share them), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"revision {revision()}")
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s after "
        f"{args.warmup:g} s of warm-up; SQLite, mock platform, pool "
        f"{POOL['EXECBROKER_CAPACITY_CORES']} cores; rows: {', '.join(args.only)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="execbroker-http-bench-") as scratch:
        bench = Bench(args, Path(scratch))
        bench.run()
    passed, failed = report(bench)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "revision": revision(),
                    "time": dt.datetime.now(dt.UTC).isoformat(),
                    "load": asdict(bench.load),
                    "floors": [asdict(run) for run in bench.floors],
                    "rows": [asdict(row) for row in bench.rows.values()],
                    "passed": passed,
                    "failed": failed,
                },
                indent=2,
            )
            + "\n"
        )
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
