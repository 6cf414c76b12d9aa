"""Finding a site's Skaha session API from its VOSI capabilities (SKAHA.md §1.1).

``skaha_url`` is either the session API itself (it ends in ``/v1``: used as is) or the
service root (e.g. ``https://ws-uv.canfar.net/skaha``). For a root, ``<root>/capabilities``
names the API: the ``accessURL`` of the capability with standardID
``http://www.opencadc.org/std/platform#session-1``. A site without a capabilities document
(404, or not answering now) is assumed to serve ``<root>/v1``. A capabilities document
without a v1 session API (a v0-only site, or not Skaha at all) stops the start-up with one
line saying so: every call would fail otherwise.
"""

from __future__ import annotations

import logging
from xml.etree.ElementTree import ParseError

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from execbroker.exceptions import StartupError

__all__ = ["SESSION_STANDARD", "discover_session_api", "session_api_in"]

logger = logging.getLogger(__name__)

SESSION_STANDARD = "http://www.opencadc.org/std/platform#session-1"
_LEGACY_SESSIONS = "vos://cadc.nrc.ca~vospace/CADC/std/Proc#sessions-1.0"
_VERSION = "/v1"
_SETTING = "skaha_url (EXECBROKER_SKAHA_URL)"


async def discover_session_api(http: httpx.AsyncClient, url: str) -> str:
    """The session API root for ``url`` (see the module); :class:`StartupError` when the
    site's capabilities show no v1 session API.
    """
    root = url.rstrip("/")
    if root.endswith(_VERSION):
        return root
    capabilities = f"{root}/capabilities"
    try:
        response = await http.get(capabilities, headers={"Accept": "text/xml"})
    except httpx.HTTPError as failure:
        logger.warning(
            "Skaha capabilities not read; assuming the session API at <skaha_url>/v1",
            extra={"capabilities": capabilities, "reason": type(failure).__name__},
        )
        return root + _VERSION
    if not response.is_success:
        logger.log(
            logging.INFO if response.status_code == 404 else logging.WARNING,
            "Skaha capabilities not available; assuming the session API at <skaha_url>/v1",
            extra={"capabilities": capabilities, "status": response.status_code},
        )
        return root + _VERSION
    found = session_api_in(response.text, capabilities)
    if found is None:
        logger.warning(
            "Skaha capabilities unreadable; assuming the session API at <skaha_url>/v1",
            extra={"capabilities": capabilities},
        )
        return root + _VERSION
    logger.info("Skaha session API found", extra={"skaha_api": found})
    return found


def session_api_in(document: str, capabilities: str) -> str | None:
    """The v1 session API a VOSI capabilities ``document`` names; None if it is not XML;
    :class:`StartupError` if it names none.
    """
    try:
        tree = fromstring(document)
    except (ParseError, DefusedXmlException):
        return None
    offered: dict[str, list[str]] = {}
    for capability in tree.iter():
        if _local(capability.tag) != "capability":
            continue
        urls = [
            (element.text or "").strip().rstrip("/")
            for element in capability.iter()
            if _local(element.tag) == "accessURL" and (element.text or "").strip()
        ]
        offered.setdefault(capability.get("standardID", ""), []).extend(urls)
    sessions = offered.get(SESSION_STANDARD, [])
    chosen = next((u for u in sessions if u.endswith(_VERSION)), None)
    if chosen is not None:
        return chosen
    if sessions:
        raise StartupError(
            f"{_SETTING}: {capabilities} offers Skaha's session API only at "
            f"{', '.join(sessions)}; this broker speaks its v1 API (CANFAR 2025.1 or later)"
        )
    legacy = " (only the legacy v0 session API)" if _LEGACY_SESSIONS in offered else ""
    raise StartupError(
        f"{_SETTING}: {capabilities} lists no Skaha session API (standardID "
        f"{SESSION_STANDARD}){legacy}; this broker needs a Skaha site with the v1 API"
    )


def _local(tag: object) -> str:
    """An element's name without its namespace."""
    return str(tag).rsplit("}", 1)[-1]
