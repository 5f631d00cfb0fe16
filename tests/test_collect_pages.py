"""collect.pages: article pages read for their metadata, from files, globs, lists and URLs.

The real-world pages are the shared corpus's: Mozilla Readability's test pages with
expected metadata (the 30 fundus pages are tests/test_collect_fundus.py's). The small
pages in tests/data/pages are ours, written to test one rule each.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import SHARED, need

from digest import config
from digest.collect import collect_all
from digest.collect.pages import read_page, read_pages
from digest.errors import ConfigError
from digest.models import Story
from digest.store import Store

DATA = Path(__file__).parent / "data" / "pages"
READABILITY = SHARED / "corpus" / "articles-readability"
JUNEAU = ZoneInfo("America/Juneau")


def _same_text(a: str, b: str) -> bool:
    """Equal once white space is folded (Le Monde's titles carry no-break spaces)."""
    return re.sub(r"\s+", " ", a).strip() == re.sub(r"\s+", " ", b).strip()


def _fields(story: Story) -> list[str]:
    return [str(value) for value in astuple(story)]


# -- our pages: one rule each -----------------------------------------------------------


def test_a_page_gives_every_field_from_its_metadata() -> None:
    story = read_page(str(DATA / "ferry-budget.html"), JUNEAU)
    assert story is not None
    # The JSON-LD headline, not og:title's short social version nor <title>'s site name.
    assert story.title == "Assembly passes ferry budget after a late-night debate"
    assert story.url == "https://news.example.org/news/assembly-passes-ferry-budget/"
    assert story.published_at == datetime(2025, 12, 5, 0, 30, tzinfo=UTC)
    assert story.dek == (
        "The Assembly voted 7-2 to keep the Auke Bay ferry running through the winter."
    )
    assert story.byline == "Mary Catharine Martin and Clarise Larson"
    assert story.section == "Local Government"
    assert story.image_url == "https://news.example.org/images/ferry.jpg"
    assert story.image_caption == "The ferry Le Conte leaves Auke Bay on Tuesday."
    assert story.image_credit == "Mark Sabbatini/Gastineau Channel News"


def test_a_page_over_http_takes_its_address_and_resolves_its_picture(http_server: str) -> None:
    page = f"{http_server}/tests/data/pages/harbor-seals.html"
    story = read_page(page, JUNEAU)
    assert story is not None
    # No canonical link: the address it was fetched from is the story's.
    assert story.url == page
    assert story.title == "Harbor seals return to the channel"
    assert story.byline == "Eric Stone"
    assert story.published_at == datetime(2025, 12, 4, 18, 5, tzinfo=UTC)
    assert story.image_url == f"{http_server}/tests/data/pages/images/harbor-seals-1200x800.jpg"
    # The <figure> showing the same picture (another size of it) gives caption and credit.
    assert story.image_caption == "Harbor seals rest on a float near the Douglas bridge."
    assert story.image_credit == "Eric Stone"


def test_404_and_a_non_html_answer_are_one_line_each_and_the_rest_go_on(
    http_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"{http_server}/tests/data"
    missing = f"{base}/pages/gone-story.html"
    not_html = f"{base}/cms/jsonfeed-1.1.json"
    pages = [
        f"{base}/pages/ferry-budget.html",
        missing,
        not_html,
        f"{base}/pages/harbor-seals.html",
    ]
    harvest = read_pages(pages, JUNEAU)
    assert [s.title for s in harvest.stories] == [
        "Assembly passes ferry budget after a late-night debate",
        "Harbor seals return to the channel",
    ]
    # Prominence is the place in the list, the failed pages counted.
    assert [s.prominence for s in harvest.stories] == [1.0, 0.25]
    assert harvest.failed == [missing, not_html]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"{missing}: HTTP 404; check the URL",
        f"{not_html}: not an HTML page; check the URL or path",
    ]


def test_a_page_without_date_title_or_address_is_skipped_with_a_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    untitled = tmp_path / "untitled.html"
    untitled.write_text("<html><head></head><body><p>Nothing to call it.</p></body></html>")
    no_date, local_copy = DATA / "no-date.html", DATA / "harbor-seals.html"
    harvest = read_pages([str(no_date), str(untitled), str(local_copy)])
    assert harvest.stories == [] and harvest.failed == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert warnings[0] == (
        f"{no_date} ('About the newsroom'): no valid publish date; skipped "
        "(a story without a date has no day's edition)"
    )
    assert warnings[1].startswith(f"{untitled}: no title")
    # A saved copy with no canonical link has no address to send readers to.
    assert warnings[2].startswith(f"{local_copy} ('Harbor seals return to the channel'): no http")


def test_a_page_whose_date_is_not_a_date_is_skipped_with_the_feeds_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    page = tmp_path / "undated.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>An undated story</title>"
        '<link rel="canonical" href="https://news.example.org/undated/">'
        '<meta property="article:published_time" content="not a date"></head>'
        "<body><p>Words without a day.</p></body></html>"
    )
    assert read_page(str(page)) is None
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{page} ('An undated story'): no valid publish date; skipped "
        "(a story without a date has no day's edition)"
    ]


def test_a_page_that_gives_only_its_day_is_placed_at_local_noon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    story = read_page(str(DATA / "day-only.html"), JUNEAU)
    assert story is not None
    assert story.published_at == datetime(2025, 12, 4, 21, 0, tzinfo=UTC)  # noon in Juneau
    assert any("gives only the day it was published" in r.getMessage() for r in caplog.records)


def test_javascript_and_data_urls_and_scripts_never_become_story_fields(
    http_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Saved locally, its only addresses are javascript: ones, so it is no story at all.
    assert read_page(str(DATA / "unsafe.html")) is None
    assert "no http(s) address" in caplog.records[-1].getMessage()
    # Fetched, the page has an address; its javascript:/data: pictures are dropped.
    page = f"{http_server}/tests/data/pages/unsafe.html"
    story = read_page(page)
    assert story is not None
    assert story.url == page
    assert story.title == "Council meets on the budget"
    assert story.dek == "Budget talks go on."
    assert story.image_url == ""
    for value in _fields(story):
        assert not re.search(r"javascript:|data:|<script|alert\(", value), value


def test_glob_and_list_keep_their_order_and_a_list_allows_comments(
    http_server: str, tmp_path: Path
) -> None:
    globbed = read_pages([str(DATA / "*.html")], JUNEAU)
    # Name order: day-only, ferry-budget, harbor-seals, no-date, unsafe (the last three
    # are saved copies without a usable address or date).
    assert [(s.title, s.prominence) for s in globbed.stories] == [
        ("Library extends winter hours", 1.0),
        ("Assembly passes ferry budget after a late-night debate", 0.8),
    ]
    assert all(s.source == str(DATA / "*.html") for s in globbed.stories)

    (tmp_path / "front-page.txt").write_text(
        "# Today's front page, top story first\n"
        f"{http_server}/tests/data/pages/harbor-seals.html#top   # the lead\n"
        "\n"
        f"{DATA / 'ferry-budget.html'}\n",
        encoding="utf-8",
    )
    listed = read_pages([str(tmp_path / "front-page.txt")], JUNEAU)
    assert [(s.title, s.prominence) for s in listed.stories] == [
        ("Harbor seals return to the channel", 1.0),
        ("Assembly passes ferry budget after a late-night debate", 0.5),
    ]
    # Paths in a list are relative to the list file.
    relative = read_pages([str(DATA / "front-page.txt")], JUNEAU)
    assert [s.title for s in relative.stories] == [
        "Assembly passes ferry budget after a late-night debate"
    ]


def test_an_entry_that_names_nothing_is_one_error_and_the_rest_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nothing, no_list = str(tmp_path / "pages" / "*.html"), str(tmp_path / "missing.txt")
    harvest = read_pages([nothing, no_list, str(DATA / "ferry-budget.html")])
    assert len(harvest.stories) == 1 and harvest.failed == [nothing, no_list]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"{nothing}: no files match; check the pattern",
        f"{no_list}: cannot read (No such file or directory); check the path",
    ]


def test_the_same_story_listed_twice_is_kept_once_in_its_first_place() -> None:
    ferry = str(DATA / "ferry-budget.html")
    harvest = read_pages([ferry, str(DATA / "day-only.html"), ferry])
    assert [(s.title, s.prominence) for s in harvest.stories] == [
        ("Assembly passes ferry budget after a late-night debate", 1.0),
        ("Library extends winter hours", 0.6667),
    ]


# -- digest.toml and the collect stage ---------------------------------------------------


def _with_sources(newsroom: Path, lines: str) -> Path:
    """The sample newsroom's digest.toml with more lines in its [sources] table."""
    toml = newsroom / "digest.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("[sources]\n", f"[sources]\n{lines}\n", 1), encoding="utf-8")
    return toml


def test_pages_in_digest_toml_resolve_like_feeds(newsroom: Path) -> None:
    (newsroom / "pages").mkdir()
    toml = _with_sources(
        newsroom, 'pages = ["https://news.example.org/news/one/", "pages/*.html", "list.txt"]'
    )
    settings = config.load(toml, env={})
    assert settings.sources.pages == (
        "https://news.example.org/news/one/",
        str(newsroom / "pages" / "*.html"),
        str(newsroom / "list.txt"),
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pages = 3", r"\[sources\] pages must be a list of strings"),
        ('page = ["a.html"]', r"\[sources\] page is not a kind of source; use feeds, "),
    ],
)
def test_bad_pages_setting_names_the_field(newsroom: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(_with_sources(newsroom, line), env={})


def test_collect_all_reads_pages_with_the_feeds_and_one_bad_page_stops_nothing(
    newsroom: Path, store: Store, http_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    missing = f"{http_server}/tests/data/pages/gone-story.html"
    pages = [f"{http_server}/tests/data/pages/ferry-budget.html", missing, str(DATA / "*.html")]
    toml = _with_sources(newsroom, f"pages = {json.dumps(pages)}")
    settings = config.load(toml, env={"DIGEST_SECRET_KEY": "test"})
    result = collect_all(settings, store)
    # 26 feed stories (the day's 11, the archive's 15); ferry-budget (once, by its
    # canonical URL) and day-only from the pages.
    assert (result.new, result.updated) == (28, 0)
    assert result.failed_sources == [missing]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"{missing}: HTTP 404; check the URL"
    ]
    window = store.stories.stories_between(
        datetime(2025, 12, 4, 15, 0, tzinfo=UTC), datetime(2025, 12, 5, 15, 0, tzinfo=UTC)
    )
    ferry = next(s for s in window if s.url.endswith("/assembly-passes-ferry-budget/"))
    assert ferry.prominence == 1.0 and ferry.byline == "Mary Catharine Martin and Clarise Larson"
    # pages=[] reads no pages; the kinds left out still come from digest.toml.
    again = collect_all(settings, store, pages=[], pageviews=[])
    # The feeds' 26 stories read again as they were: none of them "updated".
    assert (again.new, again.updated, again.failed_sources) == (0, 0, [])


def test_digest_collect_reads_the_pages_digest_toml_names(newsroom: Path) -> None:
    _with_sources(newsroom, f"pages = [{json.dumps(str(DATA / 'ferry-budget.html'))}]")
    done = subprocess.run(
        [sys.executable, "-m", "digest.cli", "collect"],
        cwd=newsroom,
        env={"PATH": "/usr/bin:/bin", "DIGEST_SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "27 new stories" in done.stdout  # the two feeds (26) and the page


def test_digest_collect_with_named_sources_reads_only_those(newsroom: Path) -> None:
    _with_sources(newsroom, f"pages = [{json.dumps(str(DATA / 'day-only.html'))}]")
    cms = DATA.parent / "cms" / "wordpress-posts.json"
    done = subprocess.run(
        [sys.executable, "-m", "digest.cli", "collect",
         "--page", str(DATA / "ferry-budget.html"), "--cms", str(cms)],
        cwd=newsroom,
        env={"PATH": "/usr/bin:/bin", "DIGEST_SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Neither the feed nor digest.toml's page: only the page and the posts named.
    store = Store.open(f"sqlite:///{newsroom / 'var' / 'digest.db'}")
    try:
        everything = store.stories.stories_between(
            datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        )
        urls = {story.url for story in everything}
    finally:
        store.close()
    assert any(u.endswith("/assembly-passes-ferry-budget/") for u in urls)
    assert "https://news.example.org/news/library-winter-hours/" not in urls  # digest.toml's
    assert not any("trump-to-meet-putin" in u for u in urls)  # the feed's
    assert "https://news.example.org/2025/12/03/harbor-seals-return/" in urls  # the CMS's
    assert f"{len(urls)} new stories" in done.stdout and len(urls) > 1


# -- the shared corpus: Mozilla Readability's test pages (fundus: test_collect_fundus.py) --


def test_readability_pages_titles_and_dates_against_expected_metadata() -> None:
    need(READABILITY.is_dir(), f"{READABILITY} is missing (the shared corpus)")
    cases = sorted(p for p in READABILITY.iterdir() if (p / "source.html").exists())
    harvest = read_pages([str(p / "source.html") for p in cases])
    assert harvest.failed == []
    by_page = {s.source: s for s in harvest.stories}
    collected = right_title = dated = right_time = 0
    for case in cases:
        expected = json.loads((case / "expected-metadata.json").read_text(encoding="utf-8"))
        story = by_page.get(str(case / "source.html"))
        if story is None:
            continue
        collected += 1
        right_title += _same_text(story.title, expected["title"])
        if expected.get("publishedTime"):
            dated += 1
            when = datetime.fromisoformat(expected["publishedTime"].replace("Z", "+00:00"))
            right_time += story.published_at == when.replace(tzinfo=when.tzinfo or UTC)
    # 37 pages; 4 are saved without a canonical link or a date and are skipped.
    # Readability's expected titles keep the site's name where we take it off (Breitbart's
    # " - Breitbart", Yahoo's " - Yahoo!ニュース"), and take The Verge's JSON-LD headline
    # where we take the one its page shows and shares (og:title = <h1>; pagemeta.py).
    assert collected == 33
    assert right_title >= 30
    assert dated == 11 and right_time == 11


def test_trafilatura_is_loaded_only_when_a_page_is_read() -> None:
    # Every digest process imports digest.collect (render checks links with its urls.py);
    # a send or a feeds-only newsroom should not pay trafilatura's 0.2 s and 8 MB.
    code = "import sys, digest.jobs, digest.render; print('trafilatura' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
