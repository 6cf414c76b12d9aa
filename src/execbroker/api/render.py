"""Records to wire documents: what a client sees of offer sets, sessions and components.

Built as plain JSON documents (nulls omitted) in the shapes of the v1.0 models; the tests
validate them against those models and against the shared schema files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from execbroker.model import kinds
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.phases import (
    ACTIVE_SESSION_PHASES,
    EXTEND_PATH,
    SessionPhase,
    phase_options,
)
from execbroker.model.records import (
    ComponentRecord,
    ComponentRole,
    OfferSetRecord,
    Schedule,
    SessionRecord,
)
from execbroker.model.wire import EnumValueOption, IntegerDeltaOption, MessageItem, dump

__all__ = ["Renderer"]

SESSION_KIND = kinds.SESSION_SCHEDULED


class Renderer:
    """``viewer``: who reads. Connector locations (which may embed a session's secret) are
    shown to the session's owner only; an administrator sees that a connector exists.
    """

    def __init__(self, base_url: str, *, viewer: str | None = None) -> None:
        self.base = base_url
        self.viewer = viewer

    def url(self, collection: str, uuid: object) -> str:
        return f"{self.base}/{collection}/{uuid}"

    def meta(self, collection: str, record: OfferSetRecord | SessionRecord) -> dict[str, Any]:
        """The metadata every offer set and session carries: identity, URL, times."""
        return {
            "uuid": str(record.uuid),
            "url": self.url(collection, record.uuid),
            "created": format_instant(record.created),
            "modified": format_instant(record.modified),
        }

    def offer_set(self, record: OfferSetRecord) -> dict[str, Any]:
        return {
            "kind": kinds.OFFERSET_EXECUTION,
            "meta": {
                **self.meta("offersets", record),
                "messages": _messages(record.messages),
            },
            "result": record.result.value,
            "offers": [self.session(offer) for offer in record.offers],
        }

    def session_summary(self, record: SessionRecord) -> dict[str, Any]:
        """A listing entry: enough to choose, with the URL to read the rest."""
        return {
            "kind": SESSION_KIND,
            "meta": self.meta("sessions", record),
            "phase": record.phase.value,
            "schedule": _schedule(record.schedule),
        }

    def offer_set_summary(self, record: OfferSetRecord) -> dict[str, Any]:
        return {
            "kind": kinds.OFFERSET_EXECUTION,
            "meta": self.meta("offersets", record),
            "result": record.result.value,
        }

    def session(self, record: SessionRecord) -> dict[str, Any]:
        document: dict[str, Any] = {
            "kind": SESSION_KIND,
            "meta": {
                **self.meta("sessions", record),
                "messages": _messages(record.messages),
                "options": _session_options(record),
            },
            "phase": record.phase.value,
        }
        if record.costs:
            document["costs"] = list(record.costs)
        metrics = _weakest(
            c.spec.get("metrics") or [] for c in record.components_of(ComponentRole.COMPUTE)
        )
        if metrics:
            document["metrics"] = metrics
        if record.expires and record.phase in (SessionPhase.OFFERED, SessionPhase.EXPIRED):
            document["expires"] = format_instant(record.expires)
        document["schedule"] = _schedule(record.schedule)
        executable = record.component(ComponentRole.EXECUTABLE)
        if executable:
            document["executable"] = self.component(executable)
        compute = record.component(ComponentRole.COMPUTE)
        if compute:
            document["compute"] = self.component(
                compute, volumes=record.components_of(ComponentRole.VOLUME)
            )
        document["storage"] = [
            self.component(c) for c in record.components_of(ComponentRole.STORAGE)
        ]
        document["data"] = [self.component(c) for c in record.components_of(ComponentRole.DATA)]
        if self.viewer is None or self.viewer == record.owner:
            document["connectors"] = list(record.connectors)
        else:
            document["connectors"] = [
                {k: v for k, v in c.items() if k not in ("location", "url")}
                for c in record.connectors
            ]
        return document

    def component(
        self, record: ComponentRecord, *, volumes: list[ComponentRecord] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "uuid": str(record.uuid),
            "name": record.name,
            "url": self.url(record.role.collection, record.uuid),
        }
        if record.description:
            meta["description"] = record.description
        meta.update(
            created=format_instant(record.created),
            modified=format_instant(record.modified),
            messages=_messages(record.messages),
        )
        document: dict[str, Any] = {"kind": record.kind, "meta": meta}
        document.update((k, v) for k, v in record.spec.items() if k != "kind")
        document["phase"] = record.phase.value
        document["schedule"] = _schedule(record.schedule)
        if volumes is not None:
            document["volumes"] = [self.component(v) for v in volumes]
        return document


def _weakest(metric_lists: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A session's metrics: its compute's, or, type by type, the weakest of several."""
    weakest: dict[str, dict[str, Any]] = {}
    for metrics in metric_lists:
        for metric in metrics:
            found = weakest.get(metric["type"])
            if found is None:
                weakest[metric["type"]] = dict(metric)
            else:
                found["min"] = min(found["min"], metric["min"])
                found["max"] = min(found["max"], metric["max"])
    return list(weakest.values())


def _messages(items: list[MessageItem]) -> list[dict[str, Any]]:
    return [dump(item) for item in items]


def _session_options(record: SessionRecord) -> list[dict[str, Any]]:
    allowed = phase_options(record.phase)
    if not allowed:
        return []
    options = [dump(EnumValueOption(path="/phase", values=[p.value for p in allowed]))]
    limit = record.extension_limit
    if record.phase in ACTIVE_SESSION_PHASES and limit is not None and limit.total_seconds() >= 1:
        options.append(
            dump(
                IntegerDeltaOption(
                    path=EXTEND_PATH, min=1, max=int(limit.total_seconds()), units="seconds"
                )
            )
        )
    return options


def _schedule(schedule: Schedule) -> dict[str, Any]:
    return {
        "preparing": {
            "start": format_instant(schedule.prepare_start),
            "duration": format_duration(schedule.prepare_duration),
        },
        # The schema types available.start as an ISO-8601 interval: a start that is fixed
        # is the zero-length interval at that instant.
        "available": {
            "start": format_instant(schedule.available_start) + "/PT0S",
            "duration": format_duration(schedule.available_duration),
        },
        "releasing": {
            "start": format_instant(schedule.release_start),
            "duration": format_duration(schedule.release_duration),
        },
    }
