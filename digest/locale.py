"""The edition's language: template strings through gettext, dates through Babel, in
`[newsroom] locale` (default en_US).

The templates mark their words with `_()` (Jinja2's i18n extension, "newstyle" gettext,
so a translation's `%(name)s` is filled and HTML-escaped by Jinja2 itself). The
catalogues are `templates/locales/LANG/LC_MESSAGES/digest.po`, one per language, English
being the source strings. `make` compiles them to `.mo` files (`pybabel compile`, no
network); a catalogue whose `.mo` is missing or older than its `.po` is compiled from
the `.po` in memory when it is loaded, so an edited translation is never ignored.

A locale without a catalogue keeps the English strings, with Babel's dates and the
language's direction (`rtl` for Arabic, Hebrew, Persian, Urdu...), and says so once in
the log. Babel is imported only here, when a copy is rendered or a letter addressed.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from datetime import date
from gettext import NullTranslations
from pathlib import Path

log = logging.getLogger("digest.locale")

DEFAULT_LOCALE = "en_US"
DOMAIN = "digest"


def known(name: str) -> bool:
    """Whether Babel knows the locale (en_US, es, es_US, ar...)."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Language:
    """What a render needs of the locale."""

    locale: str  # Babel's spelling: es_US
    translations: NullTranslations

    @property
    def lang(self) -> str:
        """BCP 47, for <html lang>: es-US."""
        return self.locale.replace("_", "-")

    @property
    def direction(self) -> str:
        from babel import Locale

        return Locale.parse(self.locale).text_direction  # "ltr" or "rtl"

    def full_date(self, day: date) -> str:
        """The edition's date as a reader of the language writes it in full."""
        from babel.dates import format_date

        return format_date(day, format="full", locale=self.locale)

    def short_date(self, moment: date) -> str:
        """A day as a list of stories gives it: "Dec 3" (en), "3 dic" (es)."""
        from babel.dates import format_skeleton

        return format_skeleton("MMMd", moment, locale=self.locale)

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def greetings(self) -> tuple[str, str]:
        """The greeting with a reader's name (`%(name)s`) and without: the send stage
        fills them per reader (send.base.Letter)."""
        return self.gettext("Good morning, %(name)s."), self.gettext("Good morning.")


def language(locale: str, templates: Path) -> Language:
    """The locale's catalogue from `templates/locales`, or the English source strings."""
    return Language(locale, _translations(locale, templates / "locales"))


@functools.lru_cache(maxsize=16)
def _translations(locale: str, folder: Path) -> NullTranslations:
    from babel import Locale
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    parsed = Locale.parse(locale)
    # es_US, then es: the most specific catalogue there is.
    for name in dict.fromkeys([str(parsed), parsed.language]):
        po = folder / name / "LC_MESSAGES" / f"{DOMAIN}.po"
        mo = po.with_suffix(".mo")
        if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
            with mo.open("rb") as handle:
                return Translations(handle, domain=DOMAIN)
        if po.exists():
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=name, domain=DOMAIN)
            compiled = io.BytesIO()
            write_mo(compiled, catalog)
            compiled.seek(0)
            return Translations(compiled, domain=DOMAIN)
    if parsed.language != "en":
        log.warning(
            "no catalogue for locale %s in %s; the email's own words stay English", locale, folder
        )
    return NullTranslations()
