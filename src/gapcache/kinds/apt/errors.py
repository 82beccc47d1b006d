"""Errors of the apt building blocks (all ``GapcacheError``: exit code 1, one clear line)."""

from __future__ import annotations

from gapcache.errors import GapcacheError


class AptError(GapcacheError):
    """An apt repository or its metadata is not usable (names the repository or URL)."""


class SignatureError(AptError):
    """A Release file's signature is missing, bad, or made by a key not in the keyring."""


class ResolveError(AptError):
    """apt could not resolve the requested packages (an unknown package, unmet dependencies)."""
