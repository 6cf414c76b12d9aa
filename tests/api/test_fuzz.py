"""Schemathesis over every operation of our own ``/openapi.json``, against a real broker.

The broker runs through its real lifespan under uvicorn on a loopback port (in a thread of
this process). Schemathesis reads the document the broker serves and sends, as alice (a
valid bearer token):

- scripted cases that reach what random data rarely does: offers made (YES and NO) from the
  example requests in JSON and YAML, direct sessions, accepting, rejecting, cancelling and
  extending sessions, conflicts, 406, 413 and 415;
- a seeded sample of each operation's *coverage* cases (boundary values, missing and
  mistyped parameters and bodies, unexpected methods; among them a request without the
  Authorization header, whose 401 must be documented too);
- *fuzzed* cases from Hypothesis, positive and negative, seeded;
- fuzzed cases on the UUIDs of real offer sets, sessions and components, so that updates,
  long polls and component reads get past "404, no such session".

Date-times in queries are drawn from boundary instants too (years 1 and 9999, offsets of
up to 14 hours). tests/api/test_boundaries.py puts such values, and integers past int64,
huge durations, NUL and repeated keys, into request bodies and updates on both databases.

No answer may be a 5xx, and every answer must conform to the document: status code, content
type, headers and body schema. The test counts the cases and fails listing every distinct
failure (operation, check, status), each with a request to reproduce it and the answer.
Two small tests check the answers that broker never gives: 429 (quotas of one) and 503
(an OIDC issuer that cannot be reached, the one 5xx the document promises).

The default budget runs in about a minute. To run more cases locally::

    EXECBROKER_FUZZ_EXAMPLES=200 EXECBROKER_FUZZ_COVERAGE=1000 \\
        .venv/bin/pytest tests/api/test_fuzz.py -q -s

``EXECBROKER_FUZZ_EXAMPLES``: Hypothesis examples per operation and mode (and per real UUID);
``EXECBROKER_FUZZ_COVERAGE``: coverage cases sampled per operation (0: all, about 63 000);
``EXECBROKER_FUZZ_SEED``: another seed, for other samples and examples.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from execbroker.config import Settings
from execbroker.fakes.server import ServerThread
from execbroker.main import create_app
from tests.support.boundaries import INSTANTS
from tests.support.live import free_port
from tests.support.users import ADMINS, auth, write_tokens_file
from tests.support.wire import example, phase_update

if TYPE_CHECKING:
    from schemathesis.specs.openapi.schemas import OpenApiCase, OpenApiOperation

EXAMPLES = int(os.environ.get("EXECBROKER_FUZZ_EXAMPLES", "25"))
COVERAGE = int(os.environ.get("EXECBROKER_FUZZ_COVERAGE", "120"))
SEED = int(os.environ.get("EXECBROKER_FUZZ_SEED", "20251128"))

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Date-times in queries include the edges of years 1 and 9999 with offsets up to 14 hours:
# ?after=9999-12-31T23:59:59-14:00 gave a 500 (issue 14) that instants in UTC cannot find.
schemathesis.openapi.format(
    "date-time",
    st.one_of(
        INSTANTS,
        st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-14))])).map(
            datetime.isoformat
        ),
    ),
)

# use_after_free and ensure_resource_availability are left out: they judge sequences of
# calls linked through the document's links (it has none) in schemathesis' stateful phase,
# which this loop does not run, so they would check nothing here.

# Seconds to wait for any answer. Every operation answers well within it (waits are capped
# by max_wait below), so a timeout is a finding, not noise.
TIMEOUT = 15
ALICE = auth("alice")
# Every few cases asks for YAML instead of JSON, so that YAML answers are checked too. XML
# is written as well, but schemathesis cannot read XML back into the JSON Schema's shape.
YAML_EVERY = 4
MAX_BODY_BYTES = 64 * 1024

# GET /sessions/{uuid}/events streams until the session ends, so it is never sent the UUID
# of a real session; generated UUIDs name no session and are answered 404 at once.
STREAMING = "GET /sessions/{uuid}/events"


@dataclass
class Finding:
    """One distinct failure: the first case that showed it, and how often it came back."""

    operation: str
    check: str
    status: int | None
    request: str
    answer: str
    detail: str
    count: int = 1

    def describe(self) -> str:
        detail = "\n".join(f"    {line}" for line in self.detail.strip()[:1500].splitlines())
        return (
            f"{self.operation}: {self.check} (status {self.status}, {self.count} case(s))\n"
            f"  request: {self.request}\n"
            f"  answer:  {self.answer}\n"
            f"  why:\n{detail}"
        )


@dataclass
class Resources:
    """UUIDs of things that exist, to aim fuzzed cases at."""

    offer_sets: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)  # by URL collection

    def add_session(self, session: dict[str, Any]) -> None:
        self.sessions.append(session["meta"]["uuid"])
        parts = [session["executable"], session["compute"]]
        parts += session["compute"].get("volumes", [])
        parts += session.get("storage", []) + session.get("data", [])
        for part in parts:
            collection = part["meta"]["url"].rsplit("/", 2)[-2]
            self.components.setdefault(collection, []).append(part["meta"]["uuid"])

    def for_operation(self, label: str) -> list[str]:
        """A few real UUIDs for ``label``'s path, or none (streams, paths without one)."""
        if label == STREAMING or "{uuid}" not in label:
            return []
        if label.endswith("/offersets/{uuid}"):
            return self.offer_sets[:3]
        if label.endswith("/sessions/{uuid}"):
            return self.sessions[:4]
        return self.components.get(label.split("/")[1], [])[:3]


class Fuzzer:
    """Sends cases to the broker, checks each answer, and keeps count of cases and findings."""

    def __init__(self, schema: Any, url: str, *, checks: list[Any]) -> None:
        self.schema = schema
        self.url = url
        self.checks = checks
        self.session = requests.Session()
        self.operations: dict[str, OpenApiOperation] = {
            result.ok().label: result.ok() for result in schema.get_all_operations()
        }
        self.cases: Counter[str] = Counter()
        self.findings: dict[tuple[str, str, int | None], Finding] = {}

    def send(self, case: OpenApiCase, *, headers: dict[str, str] | None = None) -> Response | None:
        label = case.operation.label
        self.cases[label] += 1
        if headers is None:
            headers = dict(ALICE)
            if self.cases[label] % YAML_EVERY == 0:
                headers["Accept"] = "application/yaml"
        request = case.as_curl_command(headers=headers, base_url=self.url)
        try:
            response = case.call(
                base_url=self.url,
                session=self.session,
                headers=headers,
                timeout=TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as failure:
            self._record(label, "no answer", None, request=request, answer="", detail=repr(failure))
            return None
        try:
            case.validate_response(
                response,
                checks=self.checks,
                headers=headers,
                transport_kwargs={"base_url": self.url, "session": self.session},
            )
        except FailureGroup as group:
            for found in group.exceptions:
                self._record(
                    label,
                    getattr(found, "title", type(found).__name__),
                    response.status_code,
                    request=request,
                    answer=response.text[:500],
                    detail=getattr(found, "message", str(found)),
                )
        return response

    def _record(
        self,
        label: str,
        check: str,
        status: int | None,
        *,
        request: str,
        answer: str,
        detail: str,
    ) -> None:
        key = (label, check, status)
        if key in self.findings:
            self.findings[key].count += 1
        else:
            self.findings[key] = Finding(label, check, status, request, answer, detail)

    def script(
        self,
        label: str,
        *,
        body: Any = None,
        uuid: str | None = None,
        media_type: str = "application/json",
        headers: dict[str, str] | None = None,
        expect: int,
    ) -> dict[str, Any]:
        """One hand-written case; its JSON answer when it has the ``expect``-ed status."""
        options: dict[str, Any] = {"path_parameters": {"uuid": uuid} if uuid else None}
        if body is not None:
            options.update(body=body, media_type=media_type)
        case = self.operations[label].Case(**options)
        response = self.send(case, headers={**ALICE, **(headers or {})})
        assert response is not None, f"{label}: no answer"
        assert response.status_code == expect, (label, response.status_code, response.text)
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    def coverage(self, operation: OpenApiOperation) -> None:
        """A seeded sample of the operation's coverage cases (all of them with COVERAGE=0)."""
        config = self.schema.config.generation_for(operation=operation, phase="coverage")
        cases = list(
            self.schema.iter_coverage_cases(
                operation,
                generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                generation_config=config,
            )
        )
        if 0 < COVERAGE < len(cases):
            chooser = random.Random(f"{SEED}:{operation.label}")  # noqa: S311 - a sample, no secret
            sample = chooser.sample(range(len(cases)), COVERAGE)
            cases = [cases[i] for i in sorted(sample)]
        for case in cases:
            self.send(case)

    def fuzz(
        self, operation: OpenApiOperation, mode: GenerationMode, *, uuid: str | None = None
    ) -> None:
        """EXAMPLES cases from Hypothesis, seeded; none when the mode has nothing to vary."""
        strategy = operation.as_strategy(
            generation_mode=mode, path_parameters={"uuid": uuid} if uuid else None
        )

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: we record, never raise
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: OpenApiCase) -> None:
            self.send(case)

        # Unsatisfiable: negative cases of an operation without parameters or body.
        with contextlib.suppress(Unsatisfiable):
            run()


def _scripted(fuzzer: Fuzzer) -> Resources:
    """The life of offer sets and sessions, step by step; what it creates is fuzzed later."""
    found = Resources()
    notebook = example("notebook-request.yaml")
    batch = example("container-with-data-request.yaml")
    direct = example("direct-request.json")
    offered: list[dict[str, Any]] = []
    for label, document, media_type in (
        ("POST /requests", notebook, "application/json"),
        ("POST /requests", batch, "application/yaml"),
        ("POST /offersets", notebook, "application/yaml"),
        ("POST /requests", {"compute": {}}, "application/json"),  # answered NO
    ):
        offer_set = fuzzer.script(label, body=document, media_type=media_type, expect=303)
        found.offer_sets.append(offer_set["meta"]["uuid"])
        offered += offer_set.get("offers", [])
    assert len(offered) >= 4, "the fuzzer needs offers to act on"
    sessions = [
        fuzzer.script("POST /direct", body=direct, expect=303),
        fuzzer.script("POST /sessions", body=direct, media_type="application/yaml", expect=303),
    ]

    update = "POST /sessions/{uuid}"
    accepted, rejected = offered[0]["meta"]["uuid"], offered[1]["meta"]["uuid"]
    fuzzer.script(update, uuid=accepted, body=example("accept-update.json"), expect=200)
    fuzzer.script(update, uuid=rejected, body=example("reject-update.yaml"), expect=200)
    fuzzer.script(update, uuid=rejected, body=phase_update("ACCEPTED"), expect=409)
    extend = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
    fuzzer.script(
        update, uuid=accepted, body={**extend, "delta": 10, "units": "minutes"}, expect=200
    )
    fuzzer.script(update, uuid=accepted, body={**extend, "delta": -1}, expect=422)
    cancelled = sessions[1]["meta"]["uuid"]
    fuzzer.script(update, uuid=cancelled, body=example("cancel-update.json"), expect=200)

    # What the client gets wrong about formats and sizes.
    fuzzer.script("GET /sessions", headers={"Accept": "text/html"}, expect=406)
    fuzzer.script("POST /requests", body="executable: {", media_type="text/plain", expect=415)
    fuzzer.script(
        "POST /requests",
        body={"executable": {"kind": "x" * MAX_BODY_BYTES}},
        expect=413,
    )

    for session in offered + sessions:
        found.add_session(session)
    return found


@contextlib.contextmanager
def _serve(data_dir: Path, *, checks: list[Any] = CHECKS, **overrides: Any) -> Iterator[Fuzzer]:
    """A broker on a loopback port, and a fuzzer that reads its document."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "tokens_file": write_tokens_file(data_dir / "tokens.yaml"),
        "admins": ADMINS,
        # Fuzzed ?wait= values are capped by this, so long polls end fast.
        "max_wait": 0.2,
        # No per-user quotas, or most fuzzed requests would be 429s (which are documented).
        "quota_live_offers": None,
        "quota_active_sessions": None,
        "max_body_bytes": MAX_BODY_BYTES,
        "mock_prepare_seconds": dict.fromkeys(("executable", "storage", "data", "compute"), 0.2),
        "mock_run_seconds": 1.0,
    }
    with ServerThread(create_app(Settings(**(values | overrides)))) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield Fuzzer(schema, server.url, checks=checks)


def _fail_on(fuzzer: Fuzzer) -> None:
    findings = sorted(fuzzer.findings.values(), key=lambda f: (f.operation, f.check))
    if findings:
        total = sum(fuzzer.cases.values())
        pytest.fail(
            f"{len(findings)} distinct failure(s) in {total} cases:\n\n"
            + "\n\n".join(f.describe() for f in findings),
            pytrace=False,
        )


@pytest.mark.slow  # about a minute of cases
def test_every_answer_conforms_to_the_openapi_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with _serve(tmp_path) as fuzzer:
        resources = _scripted(fuzzer)
        for label, operation in fuzzer.operations.items():
            fuzzer.coverage(operation)
            fuzzer.fuzz(operation, GenerationMode.POSITIVE)
            fuzzer.fuzz(operation, GenerationMode.NEGATIVE)
            for uuid in resources.for_operation(label):
                fuzzer.fuzz(operation, GenerationMode.POSITIVE, uuid=uuid)

    total = sum(fuzzer.cases.values())
    with capsys.disabled():
        print(
            f"\nschemathesis: {total} cases over {len(fuzzer.operations)} operations in "
            f"{time.monotonic() - started:.0f} s (seed {SEED}), "
            f"{len(fuzzer.findings)} distinct failure(s)"
        )
    # Every operation was exercised: a fuzzer that sent nothing would pass vacuously.
    assert set(fuzzer.operations) <= set(fuzzer.cases)
    _fail_on(fuzzer)


def test_quota_refusals_conform(tmp_path: Path) -> None:
    """429s, which the broker above (no quotas) never gives: one live offer, one session."""
    with _serve(tmp_path, quota_live_offers=1, quota_active_sessions=1) as fuzzer:
        notebook = example("notebook-request.yaml")
        offered = fuzzer.script("POST /requests", body=notebook, expect=303)["offers"]
        fuzzer.script("POST /requests", body=notebook, expect=429)
        fuzzer.script("POST /direct", body=example("direct-request.json"), expect=303)
        fuzzer.script("POST /sessions", body=example("direct-request.json"), expect=429)
        accept = example("accept-update.json")
        uuid = offered[0]["meta"]["uuid"]
        fuzzer.script("POST /sessions/{uuid}", uuid=uuid, body=accept, expect=429)
    _fail_on(fuzzer)


def _unverifiable_jwt() -> str:
    """A JWT-shaped token naming a key: checking it needs the issuer's keys."""

    def part(document: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'kid': 'k1', 'typ': 'JWT'})}.{part({'sub': 'alice'})}.c2ln"


def test_an_unreachable_identity_provider_is_a_documented_503(tmp_path: Path) -> None:
    """Every operation that needs a caller answers 503 with Retry-After, as documented (so
    not_a_server_error, which fails every 5xx, is not among the checks here)."""
    issuer = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    conformance = [check for check in CHECKS if check is not not_a_server_error]
    with _serve(
        tmp_path,
        checks=conformance,
        auth="oidc",
        oidc_issuer=issuer,
        oidc_audience="execbroker",
    ) as fuzzer:
        headers = {"Authorization": f"Bearer {_unverifiable_jwt()}"}
        for label, operation in fuzzer.operations.items():
            if not operation.definition.raw.get("security"):
                continue  # /healthz, /metrics
            uuid = "00000000-0000-4000-8000-000000000000" if "{uuid}" in label else None
            body = phase_update("ACCEPTED") if operation.method.lower() == "post" else None
            fuzzer.script(label, uuid=uuid, body=body, headers=headers, expect=503)
        assert sum(fuzzer.cases.values()) >= 15
    _fail_on(fuzzer)
