"""Who may edit the sub-styles: named admin tokens, stored as sha256 digests only and checked in
constant time, sent as `Authorization: Bearer <token>` (never a cookie, so no other site can edit).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

TOKENS_VARIABLE = "JEWELRY_ADMIN_TOKENS"  # name=sha256:<hex>[,name=sha256:<hex>...]
TOKENS_FILE_VARIABLE = "JEWELRY_ADMIN_TOKENS_FILE"  # a credentials.yml with `admin_tokens:`
DEFAULT_TOKENS_FILE = Path("conf/local/credentials.yml")  # read when it exists
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # recorded with each edit
DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
TOKEN_BYTES = 32  # a new token's randomness


class AdminTokenError(ValueError):
    """The configured admin tokens cannot be read (the message names the entry); editing stays
    off rather than open."""


def token_digest(token: str) -> str:
    """How a token is stored: `sha256:<hex>` of its UTF-8 bytes (tokens are random, so a plain
    hash suffices; the token itself is never stored)."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (URL-safe text), shown once to the person it is for."""
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class AdminTokens:
    """The named digests of the tokens that may edit; none configured means editing is off."""

    digests: dict[str, bytes]  # name -> raw sha256 digest

    @property
    def enabled(self) -> bool:
        """Whether any token may edit (else every edit route answers that editing is off)."""
        return bool(self.digests)

    @classmethod
    def parse(cls, entries: dict[str, str]) -> AdminTokens:
        """Tokens from `{name: "sha256:<hex>"}`; a bad name or digest is an `AdminTokenError`."""
        digests = {}
        for name, stored in entries.items():
            if not isinstance(name, str) or not TOKEN_NAME.match(name):
                raise AdminTokenError(f"admin token name {name!r}: 1-40 letters, digits, _ . -")
            found = DIGEST.match(stored) if isinstance(stored, str) else None
            if not found:
                raise AdminTokenError(
                    f"admin token '{name}' is stored as 'sha256:<64 hex digits>' "
                    "(`jewelry-pipeline admin-token NAME` prints it), never as the token itself"
                )
            digests[name] = bytes.fromhex(found.group(1))
        return cls(digests)

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> AdminTokens:
        """`JEWELRY_ADMIN_TOKENS`, else the `admin_tokens:` of `JEWELRY_ADMIN_TOKENS_FILE` (default
        conf/local/credentials.yml, when it exists), else none (editing off)."""
        environ = os.environ if environ is None else environ
        if inline := environ.get(TOKENS_VARIABLE, "").strip():
            entries = {}
            for part in inline.split(","):
                name, _, stored = part.strip().partition("=")
                entries[name] = stored
            return cls.parse(entries)
        path = Path(environ.get(TOKENS_FILE_VARIABLE) or DEFAULT_TOKENS_FILE)
        if not path.is_file():
            return cls({})
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise AdminTokenError(f"{path} is not YAML: {exc}") from None
        entries = loaded.get("admin_tokens") if isinstance(loaded, dict) else None
        if entries is None:
            return cls({})
        if not isinstance(entries, dict):
            raise AdminTokenError(f"{path}: admin_tokens is a mapping of name to digest")
        return cls.parse(entries)

    def identify(self, authorization: str | None) -> str | None:
        """The name of the token in an `Authorization: Bearer <token>` header, or None (missing,
        malformed or unknown). Every stored digest is compared, in constant time."""
        if not authorization or not self.digests:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
        found = None
        for name, digest in self.digests.items():
            if hmac.compare_digest(presented, digest):
                found = name
        return found
