"""API keys: where they come from and how a presented key is checked."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kam.serving.settings import MIN_KEY_LENGTH, ServeSettings, is_key_hash

HASH_PREFIX = "sha256:"


class Role(StrEnum):
    """What a key may do: call the API, or also the admin routes."""

    USER = "user"
    ADMIN = "admin"


class KeyFileError(ValueError):
    """The keys file cannot be used as it is."""


def key_digest(key: str) -> bytes:
    """The SHA-256 digest a key is compared by: of the key itself, or the one a hash entry
    (``sha256:<64 hex digits>``) names."""
    if is_key_hash(key):
        return bytes.fromhex(key.removeprefix(HASH_PREFIX))
    return hashlib.sha256(key.encode()).digest()


def hashed(key: str) -> str:
    """A key as its ``sha256:`` entry (a hash entry as it is)."""
    return HASH_PREFIX + key_digest(key).hex()


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, by role, each held as its SHA-256 digest.

    Parameters
    ----------
    user
        Digests of keys that may call the API.
    admin
        Digests of keys that may also call the admin routes.
    """

    user: tuple[bytes, ...] = ()
    admin: tuple[bytes, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.user or self.admin)

    def role_of(self, presented: str | None) -> Role | None:
        """The role of ``presented``, or None when it is no configured key.

        The presented key is hashed and its digest compared with every configured digest, each
        in constant time, so the time taken does not depend on which key (or how much of one)
        matched, and the service never needs the keys themselves.
        """
        if not presented:
            return None
        return self.role_of_digest(hashlib.sha256(presented.encode()).digest())

    def role_of_digest(self, candidate: bytes) -> Role | None:
        """The role of the key whose SHA-256 digest is ``candidate``."""
        is_admin = False
        is_user = False
        for key in self.admin:
            is_admin |= hmac.compare_digest(candidate, key)
        for key in self.user:
            is_user |= hmac.compare_digest(candidate, key)
        if is_admin:
            return Role.ADMIN
        return Role.USER if is_user else None


def read_keys_file(path: Path) -> tuple[list[str], list[str]]:
    """Read a keys file: one key a line, ``admin:`` before a key that may call the admin routes.

    A key may be given as its hash, ``sha256:<64 hex digits>`` (e.g. ``admin:sha256:9f86...``),
    so that the file holds no key itself. Blank lines and lines starting with ``#`` are
    skipped.

    Returns
    -------
    (user keys, admin keys)

    Raises
    ------
    KeyFileError
        For a key shorter than 16 characters or a malformed hash, naming the line.
    """
    user: list[str] = []
    admin: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        role, _, rest = line.partition(":")
        if rest and role in {"admin", "user"}:
            key, target = rest.strip(), admin if role == "admin" else user
        else:
            key, target = line, user
        if key.startswith(HASH_PREFIX) and not is_key_hash(key):
            raise KeyFileError(
                f"{path} line {number}: a {HASH_PREFIX} entry needs 64 hex digits after it"
            )
        if not is_key_hash(key) and len(key) < MIN_KEY_LENGTH:
            raise KeyFileError(
                f"{path} line {number}: key shorter than {MIN_KEY_LENGTH} characters"
            )
        target.append(key)
    return user, admin


def load_keys(settings: ServeSettings) -> ApiKeys:
    """All keys from the settings and the keys file."""
    user, admin = list(settings.api_keys), list(settings.admin_api_keys)
    if settings.api_keys_file is not None:
        file_user, file_admin = read_keys_file(settings.api_keys_file)
        user += file_user
        admin += file_admin
    return ApiKeys(
        user=tuple(dict.fromkeys(key_digest(k) for k in user)),
        admin=tuple(dict.fromkeys(key_digest(k) for k in admin)),
    )
