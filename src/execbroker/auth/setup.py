"""The authenticator the settings ask for, and the start-up check of its settings."""

from __future__ import annotations

import logging

from execbroker.auth.bindings import NameBindings
from execbroker.auth.identity import Authenticator
from execbroker.auth.jwks import insecure_url_problem
from execbroker.auth.oidc import OIDCVerifier
from execbroker.auth.tokens import TokenFile, ensure_tokens_file
from execbroker.config import Settings
from execbroker.exceptions import StartupError
from execbroker.storage.database import Database

__all__ = ["build_authenticator", "check_authentication"]

logger = logging.getLogger(__name__)


def check_authentication(settings: Settings) -> None:
    """Raise :class:`StartupError` (one line naming the setting) for settings that would
    let others mint tokens: an OIDC issuer over plain http to a host that is not loopback."""
    if settings.auth != "oidc" or not settings.oidc_issuer:
        return
    problem = insecure_url_problem(settings.oidc_issuer)
    if problem is not None:
        raise StartupError(
            f"oidc_issuer {problem}: anyone on the path could serve its keys "
            f"(EXECBROKER_OIDC_ISSUER={settings.oidc_issuer})"
        )


def build_authenticator(settings: Settings, database: Database) -> Authenticator:
    if settings.auth == "oidc":
        if not (settings.oidc_issuer and settings.oidc_audience):
            raise ValueError("auth = oidc needs oidc_issuer and oidc_audience")
        check_authentication(settings)
        logger.info(
            "authentication: OIDC tokens from %s, owners keyed by %s",
            settings.oidc_issuer,
            settings.oidc_owner_claim,
        )
        return OIDCVerifier(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            owner_claim=settings.oidc_owner_claim,
            display_claim=settings.oidc_username_claim,
            algorithms=settings.oidc_algorithms,
            leeway=settings.oidc_leeway,
            max_lifetime=settings.oidc_max_token_lifetime,
            require_at_jwt=settings.oidc_require_at_jwt,
            authorized_parties=settings.oidc_authorized_parties,
            bindings=NameBindings(database) if settings.oidc_owner_claim != "sub" else None,
            jwks_refresh=settings.oidc_jwks_refresh,
            jwks_max_age=settings.oidc_jwks_max_age,
            jwks_stale_grace=settings.oidc_jwks_stale_grace,
            jwks_timeout=settings.oidc_jwks_timeout,
            jwks_wait=settings.oidc_jwks_wait,
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
