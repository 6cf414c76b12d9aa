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
    if settings.auth.mode != "oidc" or not settings.auth.issuer:
        return
    problem = insecure_url_problem(settings.auth.issuer)
    if problem is not None:
        raise StartupError(
            f"oidc_issuer {problem}: anyone on the path could serve its keys "
            f"(EXECBROKER_OIDC_ISSUER={settings.auth.issuer})"
        )


def build_authenticator(settings: Settings, database: Database) -> Authenticator:
    if settings.auth.mode == "oidc":
        if not (settings.auth.issuer and settings.auth.audience):
            raise ValueError("auth = oidc needs oidc_issuer and oidc_audience")
        check_authentication(settings)
        logger.info(
            "authentication: OIDC tokens from %s, owners keyed by %s",
            settings.auth.issuer,
            settings.auth.owner_claim,
        )
        return OIDCVerifier(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            owner_claim=settings.auth.owner_claim,
            display_claim=settings.auth.username_claim,
            algorithms=settings.auth.algorithms,
            leeway=settings.auth.leeway.total_seconds(),
            max_lifetime=settings.auth.max_token_lifetime.total_seconds(),
            require_at_jwt=settings.auth.require_at_jwt,
            authorized_parties=settings.auth.authorized_parties,
            bindings=NameBindings(database) if settings.auth.owner_claim != "sub" else None,
            jwks_refresh=settings.auth.jwks_refresh.total_seconds(),
            jwks_max_age=settings.auth.jwks_max_age.total_seconds(),
            jwks_stale_grace=settings.auth.jwks_stale_grace.total_seconds(),
            jwks_timeout=settings.auth.jwks_timeout.total_seconds(),
            jwks_wait=settings.auth.jwks_wait.total_seconds(),
        )
    path = settings.effective_tokens_file
    if ensure_tokens_file(path, user=settings.auth.default_owner):
        logger.warning(
            "created %s with a bearer token for user %r; the execbroker CLI and dashboard "
            'read it from there (curl: -H "Authorization: Bearer $(...)", see README)',
            path,
            settings.auth.default_owner,
        )
    else:
        logger.info("authentication: bearer tokens from %s", path)
    return TokenFile(path)
