"""Any language: the email's words through gettext (Babel catalogues in templates/locales),
its date through Babel, its lang and direction from [newsroom] locale."""

from __future__ import annotations

import re
from dataclasses import replace
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from conftest import ROOT
from fakes.editions import T, edition_of
from lxml import html as lxml_html

from digest import config
from digest.config import Settings
from digest.errors import ConfigError
from digest.models import Recipient, Story
from digest.render import render
from digest.send import letter_for

LOCALES = ROOT / "templates" / "locales"


def _template_words() -> set[str]:
    """Every message the templates and digest/locale.py mark, as pybabel extracts them."""
    with (LOCALES / "babel.cfg").open(encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    return {message[2] for message in extract_from_dir(ROOT, method_map, options_map) if message[2]}


def _catalogue(language: str) -> dict[str, tuple[str, bool]]:
    with (LOCALES / language / "LC_MESSAGES" / "digest.po").open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {m.id: (m.string, m.fuzzy) for m in catalog if m.id}  # type: ignore[misc]


def test_the_spanish_catalogue_has_every_word_of_the_templates() -> None:
    words = _template_words()
    assert {"More in News", "Most Read", "Good morning, %(name)s."} <= words
    spanish = _catalogue("es")
    assert set(spanish) == words, "run `make locales` and translate what is new"
    untranslated = [w for w, (string, fuzzy) in spanish.items() if not string or fuzzy]
    assert untranslated == []
    for word, (string, _fuzzy) in spanish.items():
        assert re.findall(r"%\(\w+\)s", word) == re.findall(r"%\(\w+\)s", string), word


def _spanish(settings: Settings) -> Settings:
    newsroom = replace(
        settings.newsroom,
        name="Noticias del Canal Gastineau",
        postal_address="Calle del Canal 3100, Juneau, AK 99801",
        website="https://noticias.example.org/",
        locale="es_US",
    )
    return replace(settings, newsroom=newsroom)


SPANISH_STORIES = [
    Story(
        url="https://noticias.example.org/alcalde/",
        title="El alcalde anuncia un nuevo puente sobre el canal",
        dek="La obra costará doce millones y empezará en primavera.",
        byline="María López",
        section="Ciudad",
        published_at=T,
        image_url="https://cdn.example.org/puente.jpg",
        image_caption="El canal visto desde la calle Franklin. Al fondo, la isla Douglas.",
        image_credit="Ana Ruiz",
    ),
    Story(
        url="https://noticias.example.org/salmon/",
        title="Temporada récord de salmón en Cordova",
        dek="Los pescadores celebran la mejor captura en una década.",
        section="Economía",
        published_at=T,
        image_url="https://cdn.example.org/salmon.jpg",
    ),
    Story(
        url="https://noticias.example.org/nieve/",
        title="Primera nevada del invierno en Juneau",
        published_at=T,
    ),
]


def _english_words() -> set[str]:
    """The English words the email could show in place of Spanish ones: its own messages'
    words, and the names of days and months."""
    english = Locale.parse("en_US")
    words = {w.lower() for text in _template_words() for w in re.findall(r"[A-Za-z]{2,}", text)}
    words -= {"name", "byline", "caption", "title", "newsroom"}  # placeholders
    words |= {n.lower() for n in english.days["format"]["wide"].values()}
    words |= {n.lower() for n in english.months["format"]["wide"].values()}
    return words


def test_a_spanish_edition_has_no_english_word(settings: Settings) -> None:
    spanish = _spanish(settings)
    rendered = render(spanish, edition_of(SPANISH_STORIES))
    letter = letter_for(spanish, rendered)
    named = Recipient("ana@example.com", "Ana Ruiz")
    message = message_from_bytes(letter.message_for(named).as_bytes(), policy=default_policy)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    doc = lxml_html.fromstring(html)
    assert doc.get("lang") == "es-US" and doc.get("dir") == "ltr"
    attributes = doc.xpath("//@alt | //@aria-label | //@title")
    shown = " ".join([doc.xpath("//body")[0].text_content(), text, message["Subject"], *attributes])
    shown = re.sub(r"https?://\S+", " ", shown)  # addresses are not words a reader reads
    english = sorted(set(re.findall(r"\w+", shown.lower())) & _english_words())
    assert english == [], english
    for spanish_words in (
        "viernes, 5 de diciembre de 2025",
        "Buenos días, Ana Ruiz.",
        "Más noticias",
        "Lo más leído",
        "Leer la noticia",
        "Por María López",
        "Cancelar la suscripción",
        "Ver en el navegador",
        "Recibe este correo porque se suscribió al boletín diario de Noticias del Canal",
    ):
        assert spanish_words in " ".join(html.split()), spanish_words
        assert spanish_words.upper() in text or spanish_words in " ".join(text.split())
    anonymous = letter.message_for(Recipient("sin.nombre@example.com", ""))
    assert "Buenos días." in anonymous.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_a_right_to_left_locale_sets_lang_and_dir(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    arabic = replace(settings, newsroom=replace(settings.newsroom, locale="ar"))
    out = render(arabic, edition_of(SPANISH_STORIES))
    doc = lxml_html.fromstring(out.html)
    assert doc.get("lang") == "ar" and doc.get("dir") == "rtl"
    assert "الجمعة" in out.text  # Friday, by Babel
    assert "no catalogue for locale ar" in caplog.text  # and the words stay English


def test_an_unknown_locale_is_refused(newsroom: Path) -> None:
    path = newsroom / "digest.toml"
    path.write_text(
        path.read_text().replace(
            'brand_color = "#1a4e8a"', 'brand_color = "#1a4e8a"\nlocale = "xx_YY"'
        )
    )
    with pytest.raises(ConfigError, match=r"\[newsroom\] locale 'xx_YY' is not a locale"):
        config.load(path, env={"DIGEST_SECRET_KEY": "k"})
