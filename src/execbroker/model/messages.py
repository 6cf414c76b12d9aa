"""Messages in the Message Templates model (https://messagetemplates.org/).

Every message carries its ``template`` with ``{name}`` holes, the ``values`` for them, and
the rendered ``message``: all three are filled, always (the Java broker left two empty).
Values often come from users and platforms (names, a container's output): their control
characters are escaped here, where every message is made, so that what is stored holds no
NUL (PostgreSQL refuses it) and nothing a terminal would act on (:mod:`.printable`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from execbroker.model.phases import MessageLevel
from execbroker.model.printable import escape_controls
from execbroker.model.wire import MessageItem

__all__ = ["error", "info", "make_message", "render_template", "warn"]

_HOLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MESSAGE_KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/messages"


def render_template(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` holes; a hole without a value stays as written."""
    return _HOLE.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def make_message(
    level: MessageLevel,
    template: str,
    values: Mapping[str, object],
    *,
    time: datetime | None = None,
) -> MessageItem:
    """A message of ``level`` in the Message Templates model: ``template`` with ``values`` filled
    in.

    Values and template have their control characters escaped, so a message read from a platform
    or a client cannot reach a terminal or a log as raw control codes.
    """
    text_values = {name: escape_controls(str(value)) for name, value in values.items()}
    template = escape_controls(template)
    return MessageItem(
        kind=MESSAGE_KIND,
        time=time or datetime.now(UTC),
        level=level,
        template=template,
        values=text_values,
        message=render_template(template, text_values),
    )


def info(template: str, *, time: datetime | None = None, **values: object) -> MessageItem:
    """An INFO message: :func:`make_message` with ``values`` as keywords."""
    return make_message(MessageLevel.INFO, template, values, time=time)


def warn(template: str, *, time: datetime | None = None, **values: object) -> MessageItem:
    """A WARN message: :func:`make_message` with ``values`` as keywords."""
    return make_message(MessageLevel.WARN, template, values, time=time)


def error(template: str, *, time: datetime | None = None, **values: object) -> MessageItem:
    """An ERROR message: :func:`make_message` with ``values`` as keywords."""
    return make_message(MessageLevel.ERROR, template, values, time=time)
