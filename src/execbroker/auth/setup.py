"""The authenticator the settings ask for."""

from __future__ import annotations

import logging

from execbroker.auth.identity import Authenticator
from execbroker.auth.oidc import OIDCVerifier
from execbroker.auth.tokens import TokenFile, ensure_tokens_file
from execbroker.config import Settings

__all__ = ["build_authenticator"]

logger = logging.getLogger(__name__)


def build_authenticator(settings: Settings) -> Authenticator:
    if settings.auth == "oidc":
        if not (settings.oidc_issuer and settings.oidc_audience):
            raise ValueError("auth = oidc needs oidc_issuer and oidc_audience")
        logger.info("authentication: OIDC tokens from %s", settings.oidc_issuer)
        return OIDCVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            username_claim=settings.oidc_username_claim,
            algorithms=settings.oidc_algorithms,
            leeway=settings.oidc_leeway,
            jwks_refresh=settings.oidc_jwks_refresh,
        )
    path = settings.effective_tokens_file
    if ensure_tokens_file(path, user=settings.default_owner):
        logger.warning(
            "created %s with a bearer token for user %r; the execbroker CLI and dashboard "
            'read it from there (curl: -H "Authorization: Bearer $(...)", see README)',
            path,
            settings.default_owner,
        )
    else:
        logger.info("authentication: bearer tokens from %s", path)
    return TokenFile(path)
