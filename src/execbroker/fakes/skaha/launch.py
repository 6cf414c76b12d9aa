r"""A headless launch as Skaha really makes it: YAML text pasted together, then parsed.

Skaha's ``PostAction.getHeadlessImageBundle`` writes the image, ``cmd``, ``args`` and
``env`` parameters into YAML by string concatenation, splitting ``args`` on single spaces
and each ``env`` on ``=`` with Java's ``String.split`` (which drops trailing empty strings),
keeping only entries of exactly two parts. ``SessionJobBuilder`` then puts that text into the
headless Job template (``launch-headless.yaml``) with ``String.replaceAll``, whose
replacement treats ``\`` as an escape and ``$`` as a group reference, and Kubernetes reads
the result as YAML (1.1) and expands ``$(NAME)`` in the container's command, arguments and
environment values. :func:`render_headless` and :func:`parse_headless` do the same, so the
fake launches what Skaha would launch, or fails as Skaha would (:class:`LaunchError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import yaml

__all__ = [
    "SKAHA_TEMPLATE_ENV",
    "LaunchError",
    "Launched",
    "java_split",
    "launch_headless",
    "parse_headless",
    "render_headless",
]

_BUNDLE = "${headless.image.bundle}"
# The part of helm/skaha-config/launch-headless.yaml around the bundle, at its indentation:
# Skaha's own environment entries follow the request's.
_TEMPLATE = """\
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: "${skaha.jobname}"
        # image and start of the 'env' label comes from the image bundle
        ${headless.image.bundle}
        - name: skaha_hostname
          value: "${skaha.hostname}"
        - name: skaha_username
          value: "${skaha.userid}"
        - name: skaha_sessionid
          value: "${skaha.sessionid}"
        - name: HOME
          value: "${SKAHA_TLD}/home/${skaha.userid}"
        - name: PWD
          value: "${SKAHA_TLD}/home/${skaha.userid}"
        - name: OMP_NUM_THREADS
          value: "${software.requests.cores}"
        imagePullPolicy: IfNotPresent
"""
_PARAMETERS = {
    "skaha.jobname": "headless-ebsvc-abcd1234",
    "skaha.hostname": "ws-uv.canfar.net",
    "skaha.userid": "ebsvc",
    "skaha.sessionid": "abcd1234",
    "SKAHA_TLD": "/arc",
    "software.requests.cores": "1",
}
# The environment entries the template adds after the request's.
SKAHA_TEMPLATE_ENV = frozenset(re.findall(r"- name: (\w+)\n", _TEMPLATE))
_KUBERNETES_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


# Kubernetes reads YAML as YAML 1.1 does (go-yaml), where y and n are booleans too.
class _KubernetesYaml(yaml.SafeLoader):
    bool_values: ClassVar[dict[str, bool]] = {
        **yaml.SafeLoader.bool_values,
        "y": True,
        "n": False,
    }


_KubernetesYaml.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)
# What the Kubernetes API takes as an environment variable's name (C_IDENTIFIER, relaxed).
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class LaunchError(Exception):
    """Skaha could not build or Kubernetes could not read the Job (a 500 from Skaha)."""


@dataclass(frozen=True)
class Launched:
    """What the container runs: its command, arguments and environment, as Kubernetes
    gives them to it (the request's variables and Skaha's own).
    """

    command: list[str] | None
    args: list[str] | None
    env: dict[str, str]


def java_split(text: str, separator: str) -> list[str]:
    """Java's ``String.split`` with a one-character literal separator: no separator found
    gives the text itself (even empty); otherwise trailing empty strings are dropped.
    """
    parts = text.split(separator)
    if len(parts) == 1:
        return parts
    while parts and not parts[-1]:
        parts.pop()
    return parts


def render_headless(image: str, cmd: str | None, args: str | None, envs: Sequence[str]) -> str:
    """``getHeadlessImageBundle``: the bundle text, exactly as Skaha concatenates it."""
    text = f'image: "{image}"'
    if cmd is not None:
        text += f'\n        command: ["{cmd}"]'
    if args is not None:
        arguments = java_split(args, " ")
        if arguments:
            text += "\n        args: [" + ", ".join(f'"{a}"' for a in arguments) + "]"
    text += "\n        env:"
    for entry in envs:
        pair = java_split(entry, "=")
        if len(pair) == 2:
            text += f'\n        - name: {pair[0]}\n          value: "{pair[1]}"'
    return text


def java_replace_all(text: str, placeholder: str, replacement: str) -> str:
    r"""``text.replaceAll(<placeholder as a regex>, replacement)``: in ``replacement``,
    ``\x`` is ``x``, ``$0`` the placeholder itself, and any other ``$`` an error.
    """
    out: list[str] = []
    index = 0
    while index < len(replacement):
        character = replacement[index]
        if character == "\\":
            if index + 1 == len(replacement):
                raise LaunchError("character to be escaped is missing")
            out.append(replacement[index + 1])
            index += 2
        elif character == "$":
            if replacement[index + 1 : index + 2] != "0":
                raise LaunchError(f"Illegal group reference in {replacement[index:][:20]!r}")
            out.append(placeholder)
            index += 2
        else:
            out.append(character)
            index += 1
    return text.replace(placeholder, "".join(out))


def _job(bundle: str) -> str:
    """The template with the bundle in first, then Skaha's other parameters (the order of
    Java's HashMap: a ``${...}`` that reached the text through the bundle is filled too).
    """
    text = java_replace_all(_TEMPLATE, _BUNDLE, bundle)
    for name, value in _PARAMETERS.items():
        text = java_replace_all(text, "${" + name + "}", value)
    return text


def parse_headless(job: str) -> Launched:
    """The container Kubernetes would run from the Job text, or :class:`LaunchError`."""
    try:
        document = yaml.load(job, Loader=_KubernetesYaml)  # noqa: S506 - a safe loader
        container = document["spec"]["template"]["spec"]["containers"][0]
    except (yaml.YAMLError, KeyError, IndexError, TypeError) as failure:
        raise LaunchError(f"the Job YAML does not parse: {failure}") from failure
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name, value = item.get("name"), item.get("value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise LaunchError(f"env entry {item!r} is not a name and a string value")
        if not _ENV_NAME.fullmatch(name):
            raise LaunchError(f"Invalid value: {name!r}: a valid environment variable name")
        env[name] = _expand(value, env)  # later entries of a name win, as in Kubernetes
    command, args = container.get("command"), container.get("args")
    for part in (command, args):
        if part is not None and not (
            isinstance(part, list) and all(isinstance(p, str) for p in part)
        ):
            raise LaunchError(f"{part!r} is not a list of strings")
    return Launched(
        command=None if command is None else [_expand(c, env) for c in command],
        args=None if args is None else [_expand(a, env) for a in args],
        env=env,
    )


def launch_headless(image: str, cmd: str | None, args: str | None, envs: Sequence[str]) -> Launched:
    """What a headless ``POST /session`` with these parameters runs on Skaha."""
    return parse_headless(_job(render_headless(image, cmd, args, envs)))


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(NAME)`` expansion: ``$$`` is ``$``; an unknown name stays as is."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return env.get(name, match.group(0))

    return _KUBERNETES_REFERENCE.sub(one, text)
