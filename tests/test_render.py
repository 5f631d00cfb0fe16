"""render: what a reader gets, and what must never reach an email."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime
from itertools import pairwise

import pytest
from lxml import html as lxml_html

from digest.collect import collect_all
from digest.config import Settings
from digest.models import Edition, Pick, Story
from digest.rank import draft
from digest.render import RenderError, check_html, render
from digest.store import Store
from digest.tokens import Tokens

DAY = date(2025, 12, 5)


@pytest.fixture
def sample_edition(settings: Settings, store: Store) -> Edition:
    collect_all(settings, store)
    return draft(store, settings, DAY)


def _texts(html: str, xpath: str) -> list[str]:
    return [" ".join(e.text_content().split()) for e in lxml_html.fromstring(html).xpath(xpath)]


def test_edition_holds_lead_more_and_most_read_in_order(
    settings: Settings, sample_edition: Edition
) -> None:
    out = render(settings, sample_edition)
    assert sample_edition.lead is not None
    assert _texts(out.html, "//h1") == [sample_edition.lead.story.title]
    links = _texts(out.html, "//a")
    for pick in sample_edition.more:
        assert pick.story.title in links
    most_read = _texts(out.html, "//ol/li")
    assert most_read == [p.story.title for p in sample_edition.most_read]
    assert most_read[0].startswith("Skagway’s lone paramedic")  # the most read not above
    # The text part tells the same edition.
    assert sample_edition.lead.story.title.upper() in out.text
    positions = [out.text.index(p.story.title.split()[0]) for p in sample_edition.most_read[:1]]
    assert positions and "MOST READ" in out.text
    assert out.text.index("MORE IN NEWS") < out.text.index("MOST READ")


def test_caption_credit_dek_footer_and_preheader(
    settings: Settings, sample_edition: Edition
) -> None:
    out = render(settings, sample_edition)
    assert "(Doug Mills/The New York Times)" in out.html
    assert "Trump was expected to make what amounted to a day trip" in out.html
    assert settings.newsroom.postal_address in out.html
    assert settings.newsroom.postal_address in out.text
    tokens = Tokens(out.token_key)
    assert len(out.token_key) == 16
    assert tokens.unsubscribe_url in out.html and tokens.unsubscribe_url in out.text
    assert "View in browser" in out.html
    assert out.subject == sample_edition.lead.story.title  # type: ignore[union-attr]
    # The preheader (MJML's mj-preview) is the first hidden text of the body.
    assert sample_edition.preheader in out.html


def test_premailer_keeps_doctype_media_queries_and_important(
    settings: Settings, sample_edition: Edition
) -> None:
    out = render(settings, sample_edition)
    assert out.html.lower().startswith("<!doctype html>")
    styles = " ".join(lxml_html.fromstring(out.html).xpath("//style/text()"))
    assert re.search(r"@media only screen and \(max-width: ?479px\)", styles)
    assert "!important" in styles
    # The headline rule was inlined for clients that drop <style> blocks.
    doc = lxml_html.fromstring(out.html)
    headline_links = doc.xpath("//*[contains(@class,'headline')]//a")
    assert headline_links
    assert all("text-decoration:none" in a.get("style", "") for a in headline_links)


def test_no_web_fonts_no_scripts(settings: Settings, sample_edition: Edition) -> None:
    out = render(settings, sample_edition)
    assert "fonts.googleapis.com" not in out.html
    assert "@import" not in out.html and "<link" not in out.html
    assert "<script" not in out.html.lower()


def _hostile_edition() -> Edition:
    t = datetime(2025, 12, 5, 15, tzinfo=UTC)
    evil = Story(
        url="https://news.example.org/evil",
        title='Budget <script>alert("x")</script> & "quotes"',
        dek="<img src=x onerror=alert(1)> dek",
        section="News",
        published_at=t,
        image_url="javascript:alert(2)",
    )
    js_link = Story(url="javascript:alert(3)", title="Click me", published_at=t)
    fine = Story(url="https://news.example.org/fine", title="Fine story", published_at=t)
    picks = [Pick(s, "more", i, 0.5) for i, s in enumerate([js_link, fine], start=1)]
    return Edition(
        name="2025-12-05",
        send_at=t,
        window_start=t,
        window_end=t,
        subject=evil.title,
        preheader=evil.dek,
        lead=Pick(evil, "lead", 1, 0.9),
        more=picks,
        most_read=[Pick(js_link, "most_read", 1, 0.1, views=9)],
    )


def test_script_in_a_title_is_escaped_in_html_and_text(settings: Settings) -> None:
    out = render(settings, _hostile_edition())
    assert "<script" not in out.html.lower()
    assert "&lt;script&gt;alert(" in out.html
    assert (
        "onerror"
        not in lxml_html.tostring(lxml_html.fromstring(out.html))
        .decode()
        .split("<body")[1]
        .split("&lt;img")[0]
    )
    doc = lxml_html.fromstring(out.html)
    assert not doc.xpath("//img[@onerror]")
    assert not doc.xpath("//script")
    # The text part shows the title as the characters it is.
    assert 'BUDGET <SCRIPT>ALERT("X")</SCRIPT> & "QUOTES"' in out.text


def test_javascript_links_never_reach_the_email(settings: Settings) -> None:
    out = render(settings, _hostile_edition())
    assert "javascript:" not in out.html.lower()
    assert "javascript:" not in out.text.lower()
    assert "Click me" not in out.html  # a story without a safe link is left out entirely
    assert "Fine story" in out.html


def test_check_html_refuses_unsafe_output() -> None:
    tokens = Tokens("0123456789abcdef")
    good = (
        '<!doctype html><html><body><a href="https://a.example/">a</a>'
        f'<a href="{tokens.unsubscribe_url}">u</a></body></html>'
    )
    assert check_html(good, tokens) == []
    with pytest.raises(RenderError, match="not http"):
        check_html(good.replace("https://a.example/", "javascript:alert(1)"), tokens)
    with pytest.raises(RenderError, match="script"):
        check_html(good.replace("</body>", "<script>x</script></body>"), tokens)
    with pytest.raises(RenderError, match="unsubscribe"):
        check_html(good.replace(tokens.unsubscribe_url, "https://b.example/"), tokens)


def test_an_edition_without_stories_still_renders_honestly(settings: Settings) -> None:
    empty = replace(_hostile_edition(), lead=None, more=[], most_read=[], subject="Nothing today")
    out = render(settings, empty)
    assert "More in News" not in out.html and "Most Read" not in out.html
    assert settings.newsroom.postal_address in out.html


def test_preheader_alone_fills_the_inbox_preview(
    settings: Settings, sample_edition: Edition
) -> None:
    """An inbox previews the body's first text, hidden or not: the preheader, then only
    invisible spacer characters, so the date and "View in browser" never run into it."""
    out = render(settings, sample_edition)
    body_text = lxml_html.fromstring(out.html).xpath("//body")[0].text_content()
    start = body_text.index(sample_edition.preheader)
    assert body_text[:start].strip() == ""
    preview = body_text[start + len(sample_edition.preheader) :][:200]
    assert preview.strip("\u034f\u200c\u00a0 \n") == "", preview
    # Hidden by display:none and Outlook's mso-hide, not by white-on-white text.
    preheader = lxml_html.fromstring(out.html).xpath("//div[@class='preheader']")[0]
    assert "display:none" in preheader.get("style") and "color" not in preheader.get("style")


def test_gmail_clip_gate_refuses_a_send_unless_overridden(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest import jobs, render_checks
    from digest.render_checks import ClippedError

    store = jobs.open_store(settings)
    jobs.collect(settings, store)
    jobs.sync_subscribers(settings, store)
    jobs.draft(settings, store, DAY)
    # The demo edition is about 60 KB; a lower limit stands in for a long edition.
    monkeypatch.setattr(render_checks, "GMAIL_CLIP_BYTES", 20 * 1024)
    with pytest.raises(ClippedError) as refused:
        jobs.send(settings, store, DAY.isoformat())
    message = str(refused.value)
    assert "\n" not in message
    assert re.search(r"the HTML is \d+ KB, \d+ KB over Gmail's 20 KB clip limit", message)
    assert re.search(r"More in News \d+ KB \(8 stories, about \d\.\d KB each\)", message)
    assert "digest edit --drop" in message and "--allow-clipped" in message
    assert store.sends.get_send(DAY.isoformat()) is None  # refused before anything was recorded
    result = jobs.send(settings, store, DAY.isoformat(), allow_clipped=True)
    assert result.state == "done" and result.sent == result.recipients > 0
    store.close()


def test_section_titles_are_headings_in_order_and_alt_text_is_short(
    settings: Settings, sample_edition: Edition
) -> None:
    out = render(settings, sample_edition)
    doc = lxml_html.fromstring(out.html)
    headings = [(h.tag, " ".join(h.text_content().split())) for h in doc.xpath("//h1|//h2|//h3")]
    assert headings[0] == ("h1", sample_edition.lead.story.title)  # type: ignore[union-attr]
    assert [text for tag, text in headings if tag == "h2"] == ["More in News", "Most Read"]
    assert [text for tag, text in headings if tag == "h3"] == [
        p.story.title for p in sample_edition.more
    ]
    levels = [int(tag[1]) for tag, _ in headings]
    assert all(b <= a + 1 for a, b in pairwise(levels))  # none skipped
    alts = {img.get("src"): img.get("alt") for img in doc.xpath("//img")}
    assert all(0 < len(alt) <= 125 for alt in alts.values()), alts
    lead = sample_edition.lead.story  # type: ignore[union-attr]
    # The lead's caption is two long sentences: the alt is the first, cut at a word; the
    # whole caption stays visible under the picture.
    lead_alt = doc.xpath("//*[contains(@class,'part-lead')]//img/@alt")[0]
    assert lead_alt.endswith("…") and lead.image_caption.startswith(lead_alt[:-1])
    assert lead.image_caption in " ".join(doc.text_content().split())
    # "Nov." does not end a sentence.
    assert "The Alaska State Capitol is seen on Tuesday, Nov. 25, 2025." in alts.values()
    # The button names its story for a screen reader's list of links.
    button = doc.xpath("//td[@class='button']/a")[0]
    assert button.get("aria-label") == f"Read the story: {lead.title}"


def test_pictures_keep_their_pixel_width_for_outlook(
    settings: Settings, sample_edition: Edition
) -> None:
    """Outlook for Windows sizes a picture by its width attribute: premailer must not turn
    MJML's width="600" into width="100%" (nor add height="auto" from the CSS)."""
    out = render(settings, sample_edition)
    widths = {img.get("width") for img in lxml_html.fromstring(out.html).xpath("//img")}
    assert widths == {"240", "600", "180"}


@pytest.mark.parametrize("brand", ["#1a4e8a", "#ffd400", "#000000", "#ffffff", "#e03a3e"])
def test_any_brand_colour_gives_readable_text_in_light_and_dark(brand: str) -> None:
    from digest.palette import contrast, palettes

    for scheme in palettes(brand):
        for text, background in (
            (scheme.brand_text, scheme.card),
            (scheme.text, scheme.card),
            (scheme.headline, scheme.card),
            (scheme.muted, scheme.card),
            (scheme.footer, scheme.page),
            (scheme.button_text, scheme.button),
        ):
            assert contrast(text, background) >= 4.5, (brand, text, background)
