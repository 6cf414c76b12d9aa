r"""What a headless launch can carry through Skaha, checked at planning time (issue 17 item 5).

Skaha builds a headless session's Kubernetes Job by pasting the request's parameters into
YAML text (SKAHA-PRODUCTION.md M7; ``PostAction.getHeadlessImageBundle``):

.. code-block:: yaml

    image: "<image>"
    command: ["<cmd>"]
    args: ["<arg>", "<arg>"]          # the args parameter split on single spaces
    env:
    - name: <KEY>                     # each env=KEY=VALUE split on '=', kept only
      value: "<VALUE>"                # when that gives exactly two non-empty parts

then puts that text into its Job template with Java's ``String.replaceAll``, where ``$`` and
``\`` in the text are group references and escapes, and hands the result to Kubernetes,
which expands ``$(NAME)`` in commands, arguments and values. Nothing is quoted or escaped on
the way, so anything that would be read back differently is refused here, with a message
naming the field, before Skaha is asked: ``"``, ``\`` and ``$`` anywhere, a control
character or a line or paragraph separator anywhere (a tab too), a space in the entrypoint
or an argument, an empty argument, an ``=`` in or an empty environment value, and an
environment name that is not a C identifier, that YAML would read as a boolean or null
(``on``, ``y``, ``null``...), or that Skaha's template sets itself (``HOME``...).

The property this buys is tested with hypothesis in ``tests/skaha/test_launch.py``: every
executable these checks accept, rendered as Skaha renders it and parsed back as YAML, gives
back exactly its command, arguments and environment.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.wire import MessageItem

__all__ = [
    "SKAHA_SETS",
    "HeadlessLaunch",
    "field_problem",
    "headless_launch",
    "launch_problems",
]

# The environment entries Skaha's headless template adds after the request's own
# (helm/skaha-config/launch-headless.yaml): a request's entry of the same name would be
# overridden by them, silently.
SKAHA_SETS = frozenset(
    {"skaha_hostname", "skaha_username", "skaha_sessionid", "HOME", "PWD", "OMP_NUM_THREADS"}
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Plain scalars YAML 1.1 (what Kubernetes' YAML reader follows) takes for a boolean or null.
_YAML_WORDS = frozenset(
    word
    for base in ("y", "yes", "n", "no", "true", "false", "on", "off", "null")
    for word in (base, base.capitalize(), base.upper())
)
# Pasted without escaping: a quote ends the YAML string, a backslash starts a YAML (and a
# Java replacement) escape, and a dollar is a Java group reference or a Kubernetes $(NAME).
_PASTED_AS_CODE = ('"', "\\", "$")
# Characters YAML does not take inside a string as written, or reads as a line break.
_NOT_TEXT_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_NOT_TEXT = frozenset({"\ufeff", "\ufffe", "\uffff"})


@dataclass(frozen=True)
class HeadlessLaunch:
    """The ``cmd``, ``args`` and ``env`` parameters of a headless ``POST /session``."""

    cmd: str | None
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def headless_launch(spec: Mapping[str, Any]) -> HeadlessLaunch:
    """What a docker-container executable's wire fields become on Skaha: ``entrypoint`` is
    ``cmd`` (none when empty), ``command`` is ``args``, ``environment`` is ``env`` (sorted).
    """
    entrypoint = spec.get("entrypoint")
    environment: Mapping[str, Any] = spec.get("environment") or {}
    return HeadlessLaunch(
        cmd=entrypoint if isinstance(entrypoint, str) and entrypoint else None,
        args=tuple(str(argument) for argument in spec.get("command") or []),
        env=tuple(sorted((str(key), str(value)) for key, value in environment.items())),
    )


def launch_problems(spec: Mapping[str, Any], *, image: str | None) -> list[MessageItem]:
    """Every part of a docker-container executable that Skaha's launch would corrupt or
    drop, each naming its field (empty: it launches exactly as asked).
    """
    launch = headless_launch(spec)
    problems: list[MessageItem] = []
    if image is not None:
        problems += _text_problems("/executable/image/locations", "the image", image)
        if " " in image:
            problems.append(field_problem("/executable/image/locations", "the image has a space"))
    if launch.cmd is not None:
        problems += _entrypoint_problems(launch.cmd)
    for index, argument in enumerate(launch.args):
        problems += _argument_problems(f"/executable/command/{index}", argument)
    for name, value in launch.env:
        problems += _environment_problems(f"/executable/environment/{name}", name, value)
    return problems


def _entrypoint_problems(entrypoint: str) -> list[MessageItem]:
    path = "/executable/entrypoint"
    problems = _text_problems(path, "the entrypoint", entrypoint)
    if " " in entrypoint:
        problems.append(
            field_problem(
                path,
                "Skaha runs one executable as the entrypoint, without arguments: "
                "'{entrypoint}' has a space; put its arguments in command",
                entrypoint=entrypoint,
            )
        )
    return problems


def _argument_problems(path: str, argument: str) -> list[MessageItem]:
    problems = _text_problems(path, "the argument", argument)
    if not argument:
        problems.append(
            field_problem(
                path,
                "Skaha passes arguments joined by spaces and drops empty ones: an argument "
                "cannot be empty",
            )
        )
    elif " " in argument:
        problems.append(
            field_problem(
                path,
                "Skaha separates arguments with spaces, so an argument cannot contain "
                "one: '{argument}'",
                argument=argument,
            )
        )
    return problems


def _environment_problems(path: str, name: str, value: str) -> list[MessageItem]:
    problems: list[MessageItem] = []
    if not _IDENTIFIER.fullmatch(name):
        problems.append(
            field_problem(
                path,
                "Skaha can only pass environment variables named with letters, digits and "
                "'_', not starting with a digit",
            )
        )
    elif name in _YAML_WORDS:
        problems.append(
            field_problem(
                path,
                "Skaha writes the name into YAML unquoted, where '{name}' reads as a boolean "
                "or null: choose another name",
                name=name,
            )
        )
    elif name in SKAHA_SETS:
        problems.append(
            field_problem(
                path,
                "Skaha sets {name} itself in every headless session, over the request's own "
                "value: choose another name",
                name=name,
            )
        )
    problems += _text_problems(path, f"the value of {name}", value)
    if not value:
        problems.append(
            field_problem(
                path, "Skaha drops environment variables with an empty value: {name}", name=name
            )
        )
    if "=" in value:
        problems.append(
            field_problem(
                path, "Skaha drops environment values that contain '=': {name}", name=name
            )
        )
    return problems


def _text_problems(path: str, what: str, text: str) -> list[MessageItem]:
    """A character Skaha pastes as code, or one that YAML does not read back as written."""
    problems = [
        field_problem(
            path,
            "Skaha pastes {what} into its launch YAML unescaped, so it cannot contain {character}",
            what=what,
            character=f"'{character}'",
        )
        for character in _PASTED_AS_CODE
        if character in text
    ]
    odd = next((c for c in text if _not_text(c)), None)
    if odd is not None:
        problems.append(
            field_problem(
                path,
                "Skaha pastes {what} into its launch YAML unescaped, so it cannot contain "
                "a control character or a line break ({character})",
                what=what,
                character=f"U+{ord(odd):04X}",
            )
        )
    return problems


def _not_text(character: str) -> bool:
    return unicodedata.category(character) in _NOT_TEXT_CATEGORIES or character in _NOT_TEXT


def field_problem(path: str, template: str, **values: object) -> MessageItem:
    """An error about the request's field at ``path`` (a JSON pointer), naming it first."""
    return make_message(MessageLevel.ERROR, "{path}: " + template, {"path": path, **values})
