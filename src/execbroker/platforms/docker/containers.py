"""From a session's components to the Docker Engine API's container document, and back
from a container to what the session shows (its state, its port connectors).

Pure functions: no runtime calls here, so that every rule is testable on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

__all__ = [
    "COMPONENT_LABEL",
    "INSTANCE_LABEL",
    "SESSION_LABEL",
    "ContainerLimits",
    "Mount",
    "Port",
    "container_config",
    "container_name",
    "offered_gib",
    "port_connectors",
    "requested_ports",
]

_LABELS = "org.ivoa.execbroker"
INSTANCE_LABEL = f"{_LABELS}.instance"  # which broker: several may share one runtime
SESSION_LABEL = f"{_LABELS}.session"
COMPONENT_LABEL = f"{_LABELS}.component"  # the compute resource the container is
_GIB = 2**30
_NANO = 10**9


def container_name(component: UUID) -> str:
    """One container per compute resource, named for it: creating twice adopts."""
    return f"execbroker-{component}"


@dataclass(frozen=True)
class Mount:
    """A host directory mounted into the compute's container at ``target``."""

    source: Path
    target: str
    read_only: bool


@dataclass(frozen=True)
class Port:
    """A port the executable asked for, published on the host."""

    internal: int
    transport: str  # "tcp" or "udp"
    scheme: str  # how the connector is written: http, https, tcp or udp
    external: int | None = None  # a fixed host port, if asked for
    path: str = ""

    @property
    def key(self) -> str:
        return f"{self.internal}/{self.transport}"


@dataclass(frozen=True)
class ContainerLimits:
    """What every container gets from the platform's options: the network mode when it publishes
    ports, the host address it publishes on, and its process limit.
    """

    network: str  # the network mode of a container that publishes ports
    publish_address: str
    pids: int | None


def offered_gib(amount: object) -> int:
    """The offered amount of a ``{min, max}`` pair (the offer sets both to the same)."""
    if isinstance(amount, dict):
        return max(1, int(amount.get("min") or amount.get("max") or 1))
    return 1


def requested_ports(executable: dict[str, Any]) -> list[Port]:
    """The ports of a docker-container executable that are to be reachable."""
    network = executable.get("network") or {}
    found: list[Port] = []
    for item in network.get("ports") or []:
        internal = (item.get("internal") or {}).get("port")
        if not internal or item.get("access") is False:
            continue
        protocol = str(item.get("protocol") or "TCP").upper()
        external = (item.get("external") or {}).get("port") or None
        path = str(item.get("path") or "")
        if path and not path.startswith("/"):
            path = "/" + path
        found.append(
            Port(
                internal=int(internal),
                transport="udp" if protocol == "UDP" else "tcp",
                scheme=protocol.lower(),
                external=int(external) if external else None,
                path=path,
            )
        )
    return found


def container_config(
    *,
    image: str,
    executable: dict[str, Any],
    compute: dict[str, Any],
    mounts: list[Mount],
    labels: dict[str, str],
    limits: ContainerLimits,
    host_ports: Mapping[str, int] | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """The ``POST /containers/create`` document: the executable's command, entrypoint and
    environment; the offered cores and memory; the mounts with their modes; no network
    unless a port is asked for. A port is published on the host port the request names, or
    on the one ``host_ports`` gives for its key (the platform picks it from its range).
    With ``user`` (``uid:gid``) the container runs as that user, not as the image's.
    """
    ports = requested_ports(executable)
    cores = int((compute.get("cores") or {}).get("min") or 1)
    memory = int((compute.get("memory") or {}).get("min") or 1) * _GIB
    host: dict[str, Any] = {
        "NetworkMode": limits.network if ports else "none",
        "NanoCpus": cores * _NANO,
        "Memory": memory,
        "MemorySwap": memory,  # no swap beyond the memory offered
        "Mounts": [
            {"Type": "bind", "Source": str(m.source), "Target": m.target, "ReadOnly": m.read_only}
            for m in mounts
        ],
        "Init": True,  # a PID 1 that forwards signals: a stop is prompt
        "SecurityOpt": ["no-new-privileges"],
    }
    if limits.pids is not None:
        host["PidsLimit"] = limits.pids
    config: dict[str, Any] = {
        "Image": image,
        "Labels": labels,
        "Env": [f"{name}={value}" for name, value in (executable.get("environment") or {}).items()],
        "HostConfig": host,
    }
    if user is not None:
        config["User"] = user
    if executable.get("command"):
        config["Cmd"] = [str(arg) for arg in executable["command"]]
    if executable.get("entrypoint"):
        # The schema gives one string: the program to run, not a shell line.
        config["Entrypoint"] = [str(executable["entrypoint"])]
    if ports:
        config["ExposedPorts"] = {port.key: {} for port in ports}
        host["PortBindings"] = {
            port.key: [
                {
                    "HostIp": limits.publish_address,
                    "HostPort": str(port.external or (host_ports or {}).get(port.key) or ""),
                }
            ]
            for port in ports
        }
    return config


def port_connectors(
    inspected: dict[str, Any], ports: list[Port], *, host: str
) -> list[dict[str, Any]]:
    """A connector per published port, from the container's inspect document."""
    bindings = (inspected.get("NetworkSettings") or {}).get("Ports") or {}
    connectors: list[dict[str, Any]] = []
    for port in ports:
        published = [b for b in bindings.get(port.key) or [] if b.get("HostPort")]
        if not published:
            continue
        location = f"{port.scheme}://{_host(host)}:{published[0]['HostPort']}{port.path}"
        connectors.append(
            {
                "kind": "urn:execbroker:connector:published-port",
                "protocol": port.scheme.upper(),
                "location": location,
            }
        )
    return connectors


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
