"""The CANFAR Skaha platform: sessions on the Science Platform's Skaha API (SKAHA.md).

- :mod:`.client`: a thin async client for ``/skaha/v1`` with typed results and errors;
- :mod:`.tokens`: the broker's OIDC credentials, refreshed before they expire;
- :mod:`.mapping`: executables and resources → Skaha session parameters, and planning;
- :mod:`.platform`: the :class:`~execbroker.platforms.base.Platform` the engine drives.
"""

from execbroker.platforms.skaha.client import (
    CreateRequest,
    RetryPolicy,
    SkahaClient,
    SkahaContext,
    SkahaImage,
    SkahaSession,
)
from execbroker.platforms.skaha.errors import (
    SkahaBadRequestError,
    SkahaCreateUnknownError,
    SkahaCredentialsError,
    SkahaError,
    SkahaForbiddenError,
    SkahaListTooLargeError,
    SkahaNotFoundError,
    SkahaRequestError,
    SkahaServerError,
    SkahaUnavailableError,
    TokenFileError,
)
from execbroker.platforms.skaha.platform import SkahaOptions, SkahaPlatform
from execbroker.platforms.skaha.tokens import TokenManager, TokenSet

__all__ = [
    "CreateRequest",
    "RetryPolicy",
    "SkahaBadRequestError",
    "SkahaClient",
    "SkahaContext",
    "SkahaCreateUnknownError",
    "SkahaCredentialsError",
    "SkahaError",
    "SkahaForbiddenError",
    "SkahaImage",
    "SkahaListTooLargeError",
    "SkahaNotFoundError",
    "SkahaOptions",
    "SkahaPlatform",
    "SkahaRequestError",
    "SkahaServerError",
    "SkahaSession",
    "SkahaUnavailableError",
    "TokenFileError",
    "TokenManager",
    "TokenSet",
]
