"""The editor's page as an editor moves around it: the list of editions, coming back to
the story acted on (#story-ID), the note shown once (a cookie cleared by the page that
shows it, nothing in the address), and the inbox line over the preview. On a real
uvicorn server with the sample newsroom, through httpx and in headless Chromium.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta
from html import unescape
from typing import Any

import httpx
import pytest
import test_web_editor
from fakes.newsroom import DAY, EDITION
from test_browser import browser  # noqa: F401  (the fixture: Debian's headless Chromium)
from test_web_archive import went_out
from test_web_editor import PAGE, PASSWORD, Newsroom, flash, plain, section, view

from digest import editor, jobs, rank
from digest.config import Settings
from digest.models import Story
from digest.store import Store
from digest.web.notes import COOKIE

# test_web_editor's fixtures, the drafted sample newsroom on a live server, used here
# under their own names (assigned, not imported: a parameter of that name is no
# redefinition of them).
drafted_db = test_web_editor.drafted_db
sample = test_web_editor.sample
store = test_web_editor.store
site = test_web_editor.site
anna = test_web_editor.anna

LONG_DEK = (
    "Harbor pilots say <b>the new ferry</b> & its “fast” crossings need a deeper channel, "
    "and the borough's budget has no line for dredging before the spring of next year."
)


def item(html: str, anchor: str) -> str:
    """A story's item on the page, by its id."""
    found = re.search(rf'<li class="story" id="{anchor}">(.*?)</li>', html, re.S)
    return found.group(1) if found else ""


def in_window(settings: Settings, title: str, dek: str = "") -> Story:
    window = rank.edition_window(DAY, settings.newsroom.time_zone, settings.edition)
    return Story(
        url="https://news.example.org/" + re.sub(r"[^a-z]+", "-", title.lower()).strip("-"),
        title=title,
        dek=dek,
        published_at=window.end - timedelta(hours=2),
        section="News",
    )


def test_an_action_comes_back_to_its_story_with_a_note_shown_once(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    story = view(sample, store).others[0]
    anchor = f"story-{story.id}"
    assert f'<li class="story" id="{anchor}">' in anna.page().text

    answer = anna.post("pin", story.url, at=anchor)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{EDITION}#{anchor}"  # nothing of the note in it
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "Max-Age=120" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=" not in cookie  # the browser scopes it to the editor's folder
    assert "pinned" not in cookie  # sealed, not readable words

    page = anna.client.get(PAGE)
    note = f"pinned “{story.title}”"
    assert unescape(flash(item(page.text, anchor))) == note, "shown beside the story"
    assert flash(section(page.text, "edition")) == ""
    assert "Max-Age=0" in page.headers["set-cookie"], "the page that shows it clears it"
    again = anna.client.get(PAGE)
    assert flash(again.text) == "", "a reload shows the note no more"

    # The card of the change when it is not a story's; the test form's own card.
    answer = anna.post("approve", at="edition")
    assert answer.headers["location"] == f"{EDITION}#edition"
    assert flash(section(anna.follow(answer).text, "edition")).startswith("approved: ")
    answer = anna.post("test", "bob@", at="test")
    assert answer.headers["location"] == f"{EDITION}#test"
    assert "is not an e-mail address" in flash(section(anna.follow(answer).text, "test"))


def test_the_note_and_the_anchor_cannot_be_forged(
    anna: Newsroom, site: str, sample: Settings, store: Store
) -> None:
    story = plain_more_story(sample, store)
    for odd in ('"><script>x</script>', "//attacker.example", "story-1 onclick=x", "preview"):
        answer = anna.post("drop", story.url, at=odd)
        assert answer.headers["location"] == EDITION, odd
        anna.client.get(PAGE)
        anna.post("restore", story.url)
        anna.client.get(PAGE)

    answer = anna.post("drop", story.url, at=f"story-{story.id}")
    sealed = answer.cookies[COOKIE]
    payload, seal = sealed.split(".")
    with httpx.Client(base_url=site, auth=("anna", PASSWORD)) as other:
        for forged in (f"{payload}.{'0' * len(seal)}", f"{payload[:-2]}.{seal}", "x", ""):
            other.cookies.set(COOKIE, forged)
            assert flash(other.get(PAGE).text) == "", forged
        # A note for one edition is not shown on another's page.
        later = (DAY + timedelta(days=1)).isoformat()
        other.cookies.set(COOKIE, sealed)
        assert flash(other.get(f"/editor/{later}").text) == ""
        other.cookies.set(COOKIE, sealed)
        assert flash(other.get(PAGE).text) == f"dropped “{story.title}”"


def plain_more_story(settings: Settings, store: Store) -> Story:
    return next(p.story for p in view(settings, store).edition.more if plain(p.story.title))


def test_every_story_has_one_anchor_and_every_form_says_where_it_is(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    html = anna.page().text
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    edition = view(sample, store).edition
    above = {p.story.id for p in [edition.lead, *edition.more] if p is not None}
    # A story can be on the page twice: in Most Read and above (with most_read_repeats),
    # or in Most Read and under "Also in the window" (it is not above): anchored once.
    shown_twice = [
        p.story
        for p in edition.most_read
        if p.story.id in above or p.story in view(sample, store).others
    ]
    assert shown_twice, "the sample's Most Read has a story listed elsewhere on the page"
    for story in [p.story for p in edition.picks] + view(sample, store).others:
        assert f'id="story-{story.id}"' in html, story.title
    for form in re.findall(r"<form method=\"post\".*?</form>", html, re.S):
        where = re.search(r'name="at" value="([^"]+)"', form)
        assert where, form
        ref = re.search(r'name="ref" value="([^"]*)"', form)
        if ref and 'type="hidden" name="ref"' in form:
            url = unescape(ref.group(1))
            story = store.stories.stories_by_url([url])[url]
            assert where.group(1) == f"story-{story.id}"


def test_the_editions_list_and_moving_between_editions(
    anna: Newsroom, sample: Settings, store: Store
) -> None:
    jobs.draft(sample, store, DAY - timedelta(days=2))
    went_out(store, date(2025, 11, 20), "A Thursday <em>long</em> ago")
    editor.approve(sample, store, EDITION, "anna")
    upcoming = jobs.upcoming(sample).isoformat()

    listed = anna.page("/editor/editions")
    assert listed.status_code == 200
    text = listed.text
    assert f'href="../editor/{upcoming}"><strong>{upcoming}</strong></a>' in text
    assert "not drafted yet" in text
    stale = section(text, "not-sent")
    assert f'href="../editor/{EDITION}"' in stale and "approved" in stale
    assert (DAY - timedelta(days=2)).isoformat() in stale
    sent = section(text, "sent")
    assert 'href="../editor/2025-11-20"' in sent and 'href="../sends/2025-11-20"' in sent
    assert 'href="../editions/2025-11-20"' in sent
    assert "A Thursday &lt;em&gt;long&lt;/em&gt; ago" in sent and "<em>" not in text
    assert EDITION not in sent

    page = anna.page().text
    nav = re.search(r'<nav class="card edition-nav".*?</nav>', page, re.S)
    assert nav, page
    links = dict(re.findall(r'rel="(prev|next)" href="\.\./editor/([0-9-]+)"', nav.group(0)))
    assert links == {"prev": (DAY - timedelta(days=2)).isoformat(), "next": upcoming}
    assert 'href="../editor/editions">All editions</a>' in nav.group(0)
    assert f"Next to go out: {upcoming}" in nav.group(0)
    assert 'href="../editor/editions">Editions</a>' in page  # in the bar of every page


def test_the_inbox_line_over_the_preview(anna: Newsroom, sample: Settings, store: Store) -> None:
    hostile = in_window(sample, "A <i>ferry</i> & the “channel”", dek=LONG_DEK)
    store.stories.upsert_stories([hostile])
    stored = store.stories.stories_by_url([hostile.url])[hostile.url]
    anna.follow(anna.post("lead", hostile.url, at=f"story-{stored.id}"))
    anna.follow(anna.post("subject", "Ferry <b>news</b> & more", at="edition"))

    page = anna.page().text
    inbox = re.search(r'<div class="inbox".*?</div>', page, re.S)
    assert inbox, page
    box = inbox.group(0)
    assert f'<span class="inbox-from">{sample.sender.from_name}</span>' in box
    assert '<span class="inbox-subject">Ferry &lt;b&gt;news&lt;/b&gt; &amp; more</span>' in box
    shown = unescape(re.search(r'<span class="inbox-preheader">– (.*?)</span>', box).group(1))
    assert shown.endswith("…") and 60 <= len(shown) <= 91
    assert " ".join(LONG_DEK.split()).startswith(shown[:-1])
    assert "<b>" not in box


# -- in Chromium ---------------------------------------------------------------------


def test_an_editor_moves_around_the_page_in_the_browser(
    request: pytest.FixtureRequest, site: str, sample: Settings, store: Store
) -> None:
    """As an editor works: scroll down to a story in the window, pin it, land on it with
    the note beside it; reload and the note is gone; read the inbox line; go to the list
    of editions and back."""
    chromium: Any = request.getfixturevalue("browser")
    story = view(sample, store).others[-1]
    upcoming = jobs.upcoming(sample).isoformat()
    context = chromium.new_context(
        viewport={"width": 1280, "height": 700},
        http_credentials={"username": "anna", "password": PASSWORD},
    )
    try:
        page = context.new_page()
        page.goto(f"{site}{PAGE}")
        item = page.locator(f"#story-{story.id}")
        item.scroll_into_view_if_needed()
        with page.expect_navigation():
            item.get_by_role("button", name="Pin").click()
        page.wait_for_load_state("load")

        assert page.url == f"{site}{PAGE}#story-{story.id}", "no note in the address"
        note = page.locator(f"#story-{story.id} .flash")
        assert note.inner_text() == f"pinned “{story.title}”"
        assert page.locator(".flash").count() == 1
        assert page.locator("#more").locator(f"#story-{story.id}").count() == 1
        assert page.evaluate("window.scrollY") > 0, "it came back down to the story"
        box = note.bounding_box()
        assert box is not None and 0 <= box["y"] < 700, "the note is in view"
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280

        page.reload()
        page.wait_for_load_state("load")
        assert page.locator(".flash").count() == 0, "shown once only"
        assert page.url == f"{site}{PAGE}#story-{story.id}"

        edition = view(sample, store).edition
        assert page.locator(".inbox-from").inner_text() == sample.sender.from_name
        assert page.locator(".inbox-subject").inner_text() == edition.subject
        preheader = page.locator(".inbox-preheader")
        assert preheader.inner_text() == f"– {edition.preheader}"
        grey = preheader.evaluate("e => getComputedStyle(e).color")
        assert grey == "rgb(95, 99, 104)" and grey != page.locator(".inbox-subject").evaluate(
            "e => getComputedStyle(e).color"
        )

        page.get_by_role("link", name="All editions").click()
        page.wait_for_load_state("load")
        assert page.url == f"{site}/editor/editions"
        assert page.locator("h1").inner_text() == "Editions"
        page.get_by_role("link", name=upcoming).first.click()
        page.wait_for_load_state("load")
        assert page.url == f"{site}/editor/{upcoming}"
        assert page.get_by_role("button", name="Draft it now").is_visible()
        page.get_by_role("link", name=f"← {EDITION}").click()
        page.wait_for_load_state("load")
        assert page.url == f"{site}{PAGE}"
        assert "Edition 2025-12-05" in page.locator("h1").inner_text()
    finally:
        context.close()


def test_the_note_stays_on_the_phone_width_too(
    request: pytest.FixtureRequest, site: str, sample: Settings, store: Store
) -> None:
    """At 375 px: Drop in More, the page comes back at the story (now under Dropped),
    still at phone width, with the note beside it; Back and reload show no note."""
    chromium: Any = request.getfixturevalue("browser")
    story = plain_more_story(sample, store)
    context = chromium.new_context(
        viewport={"width": 375, "height": 800},
        http_credentials={"username": "anna", "password": PASSWORD},
    )
    try:
        page = context.new_page()
        page.goto(f"{site}{PAGE}?width=375")
        with page.expect_navigation():
            page.locator(f"#more #story-{story.id}").get_by_role("button", name="Drop").click()
        page.wait_for_load_state("load")
        assert page.url == f"{site}{PAGE}?width=375#story-{story.id}"
        assert page.locator("#dropped").locator(f"#story-{story.id} .flash").inner_text() == (
            f"dropped “{story.title}”"
        )
        assert page.locator("iframe.phone").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.reload()
        page.wait_for_load_state("load")
        assert page.locator(".flash").count() == 0
        inbox = page.locator(".inbox.phone").bounding_box()
        assert inbox is not None and inbox["width"] <= 375, "the inbox line at phone width"
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()
