"""Kind URIs: the older form is read, the v1.0 form is what everything becomes."""

from __future__ import annotations

import pytest

from execbroker.model import kinds
from execbroker.model.messages import info, render_template


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/docker-container-1.0",
            kinds.EXECUTABLE_DOCKER,
        ),
        (
            "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/data/s3-data-resource-1.0",
            kinds.DATA_S3,
        ),
        (kinds.COMPUTE_SIMPLE, kinds.COMPUTE_SIMPLE),
        ("urn:something-else", "urn:something-else"),
    ],
)
def test_normalize_kind(given: str, expected: str) -> None:
    assert kinds.normalize_kind(given) == expected


def test_messages_fill_template_values_and_text() -> None:
    item = info("Offered {cores} core(s) until {end}", cores=4, end="noon")
    assert item.template == "Offered {cores} core(s) until {end}"
    assert item.values == {"cores": "4", "end": "noon"}
    assert item.message == "Offered 4 core(s) until noon"
    assert item.time is not None
    assert item.level == "INFO"
    # A value is never re-read as a template.
    assert render_template("{a} {b}", {"a": "{b}", "b": "x"}) == "{b} x"
