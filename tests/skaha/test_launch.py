"""Launch safety by construction (issue 17 item 5): what the planning checks accept, Skaha
launches exactly as asked; what they refuse, they refuse naming the field, before Skaha.

Skaha's rendering (string concatenation into YAML, Java's split and replaceAll, Kubernetes'
YAML 1.1 and ``$(NAME)``) is :mod:`execbroker.fakes.skaha.launch`, which the fake Skaha
launches with; the broker's side is :mod:`execbroker.platforms.skaha.launch` and the
client's form body.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from execbroker.fakes.skaha import Endpoint
from execbroker.fakes.skaha.launch import (
    SKAHA_TEMPLATE_ENV,
    Launched,
    LaunchError,
    launch_headless,
)
from execbroker.platforms.skaha.client import CreateRequest
from execbroker.platforms.skaha.launch import headless_launch, launch_problems
from tests.skaha.conftest import TERMINAL, SkahaWorld
from tests.skaha.documents import headless
from tests.support.wire import post

# Characters that concatenation into YAML, Java or Kubernetes may read otherwise.
_AWKWARD = [
    '"', "\\", "$", "$(", "$$", " ", "  ", "=", "\n", "\r", "\t", "\x00", "\x1b", "\x7f",
    "\x85", "\u2028", "\u2029", "\ufeff", "#", ": ", "'", ",", "]", "[", "{", "}", "&", "*",
    "!", "|", ">", "%", "@", "`", "-", "?", "~", "\u00a0", "é", "中", "😀",
]  # fmt: skip
_NAMES = [
    "HOME", "PWD", "OMP_NUM_THREADS", "skaha_username", "on", "Off", "y", "N", "yes", "NULL",
    "true", "1A", "A-B", "A.B", "A B", "A:B", "", "_", "A=B", "é",
]  # fmt: skip


def _texts(alphabet: st.SearchStrategy[str], *, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(alphabet, min_size=min_size, max_size=6).map("".join)


_ANY_TEXT = _texts(st.one_of(st.sampled_from(_AWKWARD), st.characters()))
_ANY_NAME = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True),
    st.sampled_from(_NAMES),
    _ANY_TEXT,
)
# Ordinary text: what a user would write, letters of any script and punctuation that is not
# Skaha's to interpret. Every executable made of it must be accepted.
_ORDINARY = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn"),
    exclude_characters='"\\$ =\ufeff',
)
_ORDINARY_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda name: (
        name not in SKAHA_TEMPLATE_ENV
        and name.lower() not in {"y", "yes", "n", "no", "true", "false", "on", "off", "null"}
    )
)


def _executables(
    text: st.SearchStrategy[str], names: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "entrypoint": st.one_of(st.none(), text),
            "command": st.lists(text, max_size=4),
            "environment": st.dictionaries(names, text, max_size=4),
        }
    )


def _as_skaha_runs_it(spec: dict[str, Any]) -> Launched:
    """The executable through the broker's mapping, its client's form body, and Skaha's
    rendering and parsing of the launch."""
    launch = headless_launch(spec)
    form = CreateRequest(
        name="execbroker-x", image=TERMINAL, cmd=launch.cmd, args=launch.args, env=launch.env
    ).form()
    return launch_headless(
        TERMINAL,
        cast("str | None", form.get("cmd")),
        cast("str | None", form.get("args")),
        cast("list[str]", form.get("env", [])),
    )


def _assert_launched_as_asked(spec: dict[str, Any], launched: Launched) -> None:
    assert launched.command == ([spec["entrypoint"]] if spec["entrypoint"] else None)
    assert launched.args == (spec["command"] or None)
    asked = {k: v for k, v in launched.env.items() if k not in SKAHA_TEMPLATE_ENV}
    assert asked == spec["environment"]


@settings(max_examples=400, deadline=None)
@given(spec=_executables(_ANY_TEXT, _ANY_NAME))
def test_every_executable_the_checks_accept_launches_exactly_as_asked(
    spec: dict[str, Any],
) -> None:
    if launch_problems(spec, image=TERMINAL):
        event("refused")
        return
    event("accepted")
    _assert_launched_as_asked(spec, _as_skaha_runs_it(spec))


@settings(max_examples=200, deadline=None)
@given(spec=_executables(_texts(_ORDINARY, min_size=1), _ORDINARY_NAME))
def test_executables_of_ordinary_text_are_accepted_and_launch_as_asked(
    spec: dict[str, Any],
) -> None:
    """The checks refuse only what Skaha would spoil: ordinary text in any script passes."""
    assert launch_problems(spec, image=TERMINAL) == []
    _assert_launched_as_asked(spec, _as_skaha_runs_it(spec))


# (what, the executable's fields, the field named, whether Skaha's launch visibly spoils it)
_REFUSED: list[tuple[str, dict[str, Any], str, bool]] = [
    ("a space in the entrypoint", {"entrypoint": "python -u"}, "/executable/entrypoint", False),
    ("a quote in the entrypoint", {"entrypoint": 'run"me'}, "/executable/entrypoint", True),
    ("a backslash in the entrypoint", {"entrypoint": "C:\\run"}, "/executable/entrypoint", True),
    ("a dollar in the entrypoint", {"entrypoint": "$SHELL"}, "/executable/entrypoint", True),
    ("a space in an argument", {"command": ["my file"]}, "/executable/command/0", True),
    ("a quote in an argument", {"command": ["-m", 'say "hi"']}, "/executable/command/1", True),
    ("a backslash in an argument", {"command": ["a\\nb"]}, "/executable/command/0", True),
    ("a dollar in an argument", {"command": ["$(HOME)"]}, "/executable/command/0", True),
    ("a newline in an argument", {"command": ["a\nb"]}, "/executable/command/0", True),
    ("a carriage return in an argument", {"command": ["a\rb"]}, "/executable/command/0", True),
    ("a tab in an argument", {"command": ["a\tb"]}, "/executable/command/0", False),
    ("a NUL in an argument", {"command": ["a\x00b"]}, "/executable/command/0", True),
    ("an escape in an argument", {"command": ["\x1b[0m"]}, "/executable/command/0", True),
    ("U+0085 in an argument", {"command": ["a\x85b"]}, "/executable/command/0", True),
    ("U+2028 in an argument", {"command": ["a\u2028b"]}, "/executable/command/0", False),
    ("U+2029 in an argument", {"command": ["a\u2029b"]}, "/executable/command/0", False),
    ("an empty last argument", {"command": ["a", ""]}, "/executable/command/1", True),
    ("an empty argument", {"command": ["", "a"]}, "/executable/command/0", False),
    ("a newline in a value", {"environment": {"A": "x\ny"}}, "/executable/environment/A", True),
    ("a backslash in a value", {"environment": {"A": "x\\y"}}, "/executable/environment/A", True),
    ("a quote in a value", {"environment": {"A": 'x"y'}}, "/executable/environment/A", True),
    ("a dollar in a value", {"environment": {"A": "$(B)"}}, "/executable/environment/A", True),
    ("an '=' in a value", {"environment": {"A": "k=v"}}, "/executable/environment/A", True),
    ("an empty value", {"environment": {"A": ""}}, "/executable/environment/A", True),
    ("a space in a name", {"environment": {"MY VAR": "1"}}, "/executable/environment/MY VAR", True),
    ("a colon in a name", {"environment": {"A:B": "1"}}, "/executable/environment/A:B", True),
    ("a name from a digit", {"environment": {"1A": "1"}}, "/executable/environment/1A", True),
    ("a boolean name", {"environment": {"on": "1"}}, "/executable/environment/on", True),
    ("a one-letter boolean name", {"environment": {"y": "1"}}, "/executable/environment/y", True),
    ("a null name", {"environment": {"NULL": "1"}}, "/executable/environment/NULL", True),
    ("a name Skaha sets", {"environment": {"HOME": "/x"}}, "/executable/environment/HOME", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "path", "spoiled"),
    [pytest.param(fields, path, spoiled, id=what) for what, fields, path, spoiled in _REFUSED],
)
def test_each_injection_is_refused_naming_its_field(
    fields: dict[str, Any], path: str, spoiled: bool
) -> None:
    spec = {"entrypoint": None, "command": [], "environment": {}, **fields}
    problems = launch_problems(spec, image=TERMINAL)
    assert problems, "refused"
    assert {(p.values or {}).get("path") for p in problems} == {path}
    assert all((p.message or "").startswith(f"{path}: Skaha") for p in problems)
    if spoiled:  # and it is refused for a reason: Skaha would not launch it as asked
        with pytest.raises((LaunchError, AssertionError)):
            _assert_launched_as_asked(spec, _as_skaha_runs_it(spec))


def test_an_image_reference_skaha_would_paste_badly_is_refused() -> None:
    for image in (f'{TERMINAL}"', f"{TERMINAL}\n", f"{TERMINAL} x", f"{TERMINAL}$1"):
        problems = launch_problems({}, image=image)
        paths = {(p.values or {}).get("path") for p in problems}
        assert paths == {"/executable/image/locations"}, image


def _names(text: str, pointer: str) -> bool:
    """Whether an answer names the field: as a JSON pointer, or (a NUL, which the body
    parser refuses first) as ``$.executable.command[0]``."""
    *parents, last = pointer.strip("/").split("/")
    dotted = "$." + ".".join(parents) + (f"[{last}]" if last.isdigit() else f".{last}")
    return pointer in text or dotted in text


async def test_an_injection_gets_no_and_never_reaches_skaha(broker: Any, world: SkahaWorld) -> None:
    """End to end: an offer request or a direct run carrying an injection gets NO (or a
    400) naming the field, and the fake Skaha is never asked to create anything."""
    async with broker(**world.settings()) as client:
        answers = []
        for what, fields, path, _ in _REFUSED:
            document = headless(1)
            document["executable"].update(
                {key: value for key, value in fields.items() if key != "environment"}
            )
            document["executable"]["environment"] = fields.get("environment", {})
            offers = await post(client, "/requests", document)
            direct = await post(client, "/direct", document)
            answers.append((what, path, offers, direct))
        fine = await post(client, "/requests", headless(1, {"STAGE": "final"}))

    for what, path, offers, direct in answers:
        assert offers.status_code in (200, 201, 303, 400, 422), (what, offers.text)
        if offers.status_code < 400:
            assert offers.json()["result"] == "NO", what
        assert _names(offers.text, path), (what, offers.text)
        assert 400 <= direct.status_code < 500, (what, direct.status_code)
    assert fine.json()["result"] == "YES", "an ordinary request is still offered"
    assert world.fake.request_count(Endpoint.CREATE_SESSION) == 0, "nothing reached Skaha"
    assert world.fake.launched() == []
