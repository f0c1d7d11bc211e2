"""Exceptions raised by the DNSSEC signer.

Every exception derives from :class:`SignerError`, so callers can catch one root.
Messages say what went wrong and what to do about it; they never contain key material.
"""

from __future__ import annotations


class SignerError(Exception):
    """Root of every error raised by the ``signer`` package."""


class UnsupportedAlgorithmError(SignerError):
    """A DNSSEC algorithm (or DS digest type) that zonefan does not implement."""


class InvalidKeyError(SignerError):
    """Key material that does not fit its declared algorithm or flags."""


class KeyFileError(SignerError):
    """A private key file that is missing, unreadable, corrupt or clashes with another key."""


class KeyPermissionError(SignerError):
    """A key directory or key file that other users could read or modify."""
