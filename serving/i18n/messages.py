"""The message catalogs: the page's words in each language, as gettext catalogs a translator edits.

The catalogs are ``serving/i18n/locale/<locale>/LC_MESSAGES/messages.po`` (English is the
source language and needs none). They are compiled with Babel when first used, so no compiled
``.mo`` file is kept in the repository or needs a build step. ``pybabel extract -F
serving/i18n/babel.cfg`` lists every message of the templates and the Python code.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DOMAIN = "messages"
# the catalog of each translated language, by language tag
CATALOGS: dict[str, str] = {"zh-CN": "zh_CN"}


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where shown."""
    return message


@cache
def catalog(language: str) -> Catalog | None:
    """The parsed ``.po`` catalog of ``language``; None for English, the source language."""
    folder = CATALOGS.get(language)
    if folder is None:
        return None
    source = resources.files(__package__).joinpath("locale", folder, "LC_MESSAGES", DOMAIN + ".po")
    with source.open("rb") as handle:
        return read_po(handle, locale=folder)


@cache
def _translations(language: str) -> gettext.NullTranslations:
    parsed = catalog(language)
    if parsed is None:
        return gettext.NullTranslations()
    compiled = io.BytesIO()
    write_mo(compiled, parsed)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@dataclass(frozen=True)
class Translator:
    """The words of one language: ``gettext`` and ``ngettext`` with ``%(name)s`` fields."""

    language: str

    def gettext(self, message: str, /, **fields: Any) -> str:
        """``message`` in this language, its ``%(name)s`` fields filled from ``fields``."""
        text = _translations(self.language).gettext(message)
        return text % fields if fields else text

    def ngettext(self, singular: str, plural: str, count: int, /, **fields: Any) -> str:
        """The singular or plural message for ``count`` (``%(num)s`` is ``count``)."""
        text = _translations(self.language).ngettext(singular, plural, count)
        return text % {"num": count, **fields}

    @property
    def callables(self) -> dict[str, Callable[..., str]]:
        """What templates call: ``_``, ``gettext`` and ``ngettext``."""
        return {"_": self.gettext, "gettext": self.gettext, "ngettext": self.ngettext}


def translator(language: str) -> Translator:
    """The translator of ``language`` (``en`` or ``zh-CN``)."""
    return Translator(language)
