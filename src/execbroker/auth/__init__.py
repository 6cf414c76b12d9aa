"""Who is calling: bearer tokens from a local file, or JWTs from an OIDC issuer."""

from execbroker.auth.identity import Authenticator, Caller, Identity

__all__ = ["Authenticator", "Caller", "Identity"]
