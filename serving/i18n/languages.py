"""Which language a request is answered in: ``?lang=``, the page's cookie, ``Accept-Language``,
then the service's setting ``KAM_LANGUAGE``.

Two languages are spoken: ``zh-CN`` and ``en``. Any Chinese tag (``zh``, ``zh-Hans``,
``zh_CN``) means ``zh-CN``, any English one ``en``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kam.serving.decisions.phrasebook import LANGUAGES

DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "kam_lang"
LANGUAGE_PARAM = "lang"
# Babel's locale identifier of each language
LOCALES: dict[str, str] = {"en": "en", "zh-CN": "zh_Hans_CN"}
# What each language is called in itself: the page's switch shows the other one's name
NAMES: dict[str, str] = {"en": "English", "zh-CN": "中文"}


class LanguageError(ValueError):
    """A language that is not spoken; the message names the ones that are."""


def known(tag: str | None) -> str | None:
    """The spoken language a tag means (``zh``, ``zh_CN``, ``en-GB`` ...), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-")[0].casefold()
    if primary == "zh":
        return "zh-CN"
    if primary == "en":
        return "en"
    return None


def language_of(tag: str) -> str:
    """The spoken language ``tag`` names.

    Raises
    ------
    LanguageError
        When it names none of :data:`~kam.serving.decisions.phrasebook.LANGUAGES`.
    """
    language = known(tag)
    if language is None:
        raise LanguageError(
            f"language {tag!r} is not available; use one of {', '.join(LANGUAGES)}"
        )
    return language


def from_accept_language(header: str | None) -> str | None:
    """The spoken language the browser prefers most, by ``Accept-Language`` quality."""
    if not header:
        return None
    choices: list[tuple[float, int, str]] = []
    for at, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        language = known(tag)
        if language is not None and quality > 0:
            choices.append((-quality, at, language))
    return min(choices)[2] if choices else None


def negotiate(
    query: Mapping[str, str],
    cookies: Mapping[str, str],
    headers: Mapping[str, str],
    default: str = DEFAULT_LANGUAGE,
) -> str:
    """The language of a request: ``?lang=``, the cookie, ``Accept-Language``, ``default``.

    An unknown ``?lang=`` or cookie value is passed over (the page stays usable); the API
    checks ``?lang=`` itself with :func:`language_of` to refuse it.
    """
    for candidate in (query.get(LANGUAGE_PARAM), cookies.get(LANGUAGE_COOKIE)):
        language = known(candidate)
        if language is not None:
            return language
    return from_accept_language(headers.get("accept-language")) or known(default) or "en"
