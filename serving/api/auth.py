"""API keys: where they come from and how a presented key is checked."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kam.serving.settings import MIN_KEY_LENGTH, ServeSettings


class Role(StrEnum):
    """What a key may do: call the API, or also the admin routes."""

    USER = "user"
    ADMIN = "admin"


class KeyFileError(ValueError):
    """The keys file cannot be used as it is."""


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, by role.

    Parameters
    ----------
    user
        Keys that may call the API.
    admin
        Keys that may also call the admin routes.
    """

    user: tuple[bytes, ...] = ()
    admin: tuple[bytes, ...] = ()

    @property
    def configured(self) -> bool:
        return bool(self.user or self.admin)

    def role_of(self, presented: str | None) -> Role | None:
        """The role of ``presented``, or None when it is no configured key.

        Every configured key is compared, each in constant time, so the time taken does not
        depend on which key (or how much of one) matched.
        """
        if not presented:
            return None
        candidate = presented.encode()
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

    Blank lines and lines starting with ``#`` are skipped.

    Returns
    -------
    (user keys, admin keys)

    Raises
    ------
    KeyFileError
        For a key shorter than 16 characters, naming the line.
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
        if len(key) < MIN_KEY_LENGTH:
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
        user=tuple(dict.fromkeys(k.encode() for k in user)),
        admin=tuple(dict.fromkeys(k.encode() for k in admin)),
    )
