"""The authenticator the settings ask for, and the start-up check of its settings."""

from __future__ import annotations

import logging
from pathlib import Path

from execbroker.auth.bindings import NameBindings
from execbroker.auth.identity import Authenticator
from execbroker.auth.jwks import insecure_url_problem
from execbroker.auth.oidc import OIDCVerifier
from execbroker.auth.tokens import TokenFile, ensure_tokens_file
from execbroker.config import AuthSettings
from execbroker.exceptions import StartupError
from execbroker.storage.database import Database

__all__ = ["build_authenticator", "check_authentication"]

logger = logging.getLogger(__name__)


def check_authentication(auth: AuthSettings) -> None:
    """Raise :class:`StartupError` (one line naming the setting) for settings that would
    let others mint tokens: an OIDC issuer over plain http to a host that is not loopback.
    """
    if auth.mode != "oidc" or not auth.issuer:
        return
    problem = insecure_url_problem(auth.issuer)
    if problem is not None:
        raise StartupError(
            f"oidc_issuer {problem}: anyone on the path could serve its keys "
            f"(EXECBROKER_OIDC_ISSUER={auth.issuer})"
        )


def build_authenticator(
    auth: AuthSettings, *, tokens_file: Path, database: Database
) -> Authenticator:
    """The OIDC verifier or the tokens file (``tokens_file``: the one in force) ``auth`` asks
    for.
    """
    if auth.mode == "oidc":
        check_authentication(auth)
        logger.info(
            "authentication: OIDC tokens from %s, owners keyed by %s",
            auth.issuer,
            auth.owner_claim,
        )
        return OIDCVerifier(
            # AuthSettings refuses mode oidc without an issuer and an audience.
            issuer=auth.issuer or "",
            audience=auth.audience or "",
            owner_claim=auth.owner_claim,
            display_claim=auth.username_claim,
            algorithms=auth.algorithms,
            leeway=auth.leeway.total_seconds(),
            max_lifetime=auth.max_token_lifetime.total_seconds(),
            require_at_jwt=auth.require_at_jwt,
            authorized_parties=auth.authorized_parties,
            bindings=NameBindings(database) if auth.owner_claim != "sub" else None,
            jwks_refresh=auth.jwks_refresh.total_seconds(),
            jwks_max_age=auth.jwks_max_age.total_seconds(),
            jwks_stale_grace=auth.jwks_stale_grace.total_seconds(),
            jwks_timeout=auth.jwks_timeout.total_seconds(),
            jwks_wait=auth.jwks_wait.total_seconds(),
        )
    path = tokens_file
    if ensure_tokens_file(path, user=auth.default_owner):
        logger.warning(
            "created %s with a bearer token for user %r; the execbroker CLI and dashboard "
            'read it from there (curl: -H "Authorization: Bearer $(...)", see README)',
            path,
            auth.default_owner,
        )
    else:
        logger.info("authentication: bearer tokens from %s", path)
    return TokenFile(path)
