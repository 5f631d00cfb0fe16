"""collect.cms: WordPress REST API posts and JSON Feeds, normalised into stories.

tests/data/cms/wordpress-posts.json is ours, written to the shape the WordPress REST
API documents for /wp-json/wp/v2/posts?_embed; jsonfeed-1.1.json is ours, to the JSON
Feed 1.1 spec. The real JSON Feeds are the shared corpus's (NetNewsWire's test feeds).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import SHARED, need

from digest import config
from digest.collect import collect_all
from digest.collect.cms import parse_cms, read_cms
from digest.errors import InputError
from digest.models import Story
from digest.store import Store

DATA = Path(__file__).parent / "data" / "cms"
WORDPRESS = DATA / "wordpress-posts.json"
JSON_FEED = DATA / "jsonfeed-1.1.json"
FEEDS = SHARED / "corpus" / "feeds-rsparser"
JUNEAU = ZoneInfo("America/Juneau")


def _no_script_anywhere(story: Story) -> None:
    for value in astuple(story):
        assert not re.search(r"javascript:|data:|<script|<img|alert\(|onerror", str(value)), value


def test_wordpress_post_gives_every_field() -> None:
    stories = read_cms(str(WORDPRESS), JUNEAU)
    ferry = stories[0]
    # Entities decoded: &#8212; and &#8217; are characters, not markup.
    assert ferry.title == "Assembly passes ferry budget — what’s next for Auke Bay"
    # Tracking parameters go; the link is the story's canonical URL.
    assert ferry.url == "https://news.example.org/2025/12/04/assembly-passes-ferry-budget/"
    # date_gmt is UTC written without an offset.
    assert ferry.published_at == datetime(2025, 12, 4, 23, 10, tzinfo=UTC)
    # The excerpt's <p> and WordPress's "[…]" are gone.
    assert ferry.dek == (
        "The Assembly voted 7-2 to keep the Auke Bay ferry running through the winter & spring."
    )
    assert ferry.byline == "Mary Catharine Martin"
    # "Uncategorized" is WordPress's placeholder, not a section.
    assert ferry.section == "Local & State Government"
    assert ferry.image_url == (
        "https://news.example.org/wp-content/uploads/2025/12/ferry-le-conte.jpg"
    )
    assert ferry.image_caption == "The ferry Le Conte leaves Auke Bay on Tuesday."
    assert ferry.image_credit == "Mark Sabbatini/Gastineau Channel News"
    assert ferry.prominence == 1.0
    assert ferry.source == str(WORDPRESS)


def test_html_and_script_in_a_wordpress_title_become_plain_text() -> None:
    council = read_cms(str(WORDPRESS))[1]
    assert council.title == "Council meets on the budget"
    assert council.dek == "Budget talks go on."
    # Its featured image's source_url is javascript:, so the story has no picture.
    assert council.image_url == ""
    _no_script_anywhere(council)


def test_wordpress_javascript_link_skipped_and_odd_posts_still_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stories = read_cms(str(WORDPRESS), JUNEAU)
    assert [s.title for s in stories] == [
        "Assembly passes ferry budget — what’s next for Auke Bay",
        "Council meets on the budget",
        "Harbor seals return to the channel",
        "Library extends winter hours",
    ]
    assert [s.prominence for s in stories] == [1.0, 0.8, 0.4, 0.2]
    for story in stories:
        _no_script_anywhere(story)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{WORDPRESS}: entry 3 ('A post whose link is a script'): "
        "link \"javascript:alert('link')\" is not http(s); skipped"
    ]
    seals, library = stories[2], stories[3]
    # A private featured image embeds as an error object: no picture, story kept.
    assert seals.image_url == "" and seals.byline == "Eric Stone"
    # No date_gmt: the post's local `date` is read in the newsroom's time zone.
    assert library.published_at == datetime(2025, 12, 3, 21, 0, tzinfo=UTC)


def test_json_feed_gives_every_field_and_skips_what_cannot_be_a_story(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stories = read_cms(str(JSON_FEED))
    assert [s.title for s in stories] == [
        "Mount Roberts Tram opens early & the trails follow",
        "A story whose picture is a script",
    ]
    tram = stories[0]
    assert tram.url == "https://news.example.org/news/tram-opens-early/"
    assert tram.published_at == datetime(2025, 12, 4, 19, 15, tzinfo=UTC)
    assert tram.dek == "The tram will run from April 20, two weeks earlier than usual."
    assert tram.byline == "Eric Stone and Clarise Larson"
    assert tram.section == "Tourism"
    assert tram.image_url == "https://news.example.org/images/tram.jpg"
    assert stories[1].image_url == ""
    for story in stories:
        _no_script_anywhere(story)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "entry 3 ('A story whose link is a script'): link" in warnings[0]
    assert warnings[1] == (
        f"{JSON_FEED}: entry 4 ('A story without a date'): no valid publish date; skipped "
        "(a story without a date has no day's edition)"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"<rss><channel></channel></rss>", r"x\.json: not JSON \(.*\); expected WordPress"),
        (b'{"title": "a feed"}', r"x\.json: not a format digest reads; expected WordPress REST"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', r"JSON Feed without an items list"),
        (b'[{"id": 1, "name": "not a post"}]', r"not a format digest reads"),
        (
            b'{"code": "rest_no_route", "message": "No route was found", "data": {"status": 404}}',
            r"x\.json: WordPress answered 'rest_no_route' \(No route was found\); check the URL",
        ),
    ],
)
def test_anything_else_is_one_error_naming_the_source_and_the_formats(
    data: bytes, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        parse_cms(data, "x.json", "file:///tmp/x.json")


def test_a_site_with_no_posts_gives_no_stories() -> None:
    assert parse_cms(b"[]", "empty.json", "https://news.example.org/wp-json/wp/v2/posts") == []


def test_wordpress_over_http_and_a_404(http_server: str) -> None:
    url = f"{http_server}/tests/data/cms/wordpress-posts.json?_embed"
    assert len(read_cms(url)) == 4
    with pytest.raises(InputError, match=r"posts\.json: HTTP 404; check the URL"):
        read_cms(f"{http_server}/wp-json/wp/v2/posts.json")


def test_relative_links_and_pictures_resolve_against_the_source(http_server: str) -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1",
        "items": [
            {
                "url": "/news/a/",
                "title": "A",
                "image": "img/a.jpg",
                "date_published": "2025-12-04T10:00:00Z",
                "author": {"name": "Eric Stone"},  # JSON Feed 1.0's single author
            }
        ],
    }
    base = f"{http_server}/feeds/feed.json"
    [story] = parse_cms(json.dumps(feed).encode(), "feed.json", base)
    assert story.url == f"{http_server}/news/a/"
    assert story.image_url == f"{http_server}/feeds/img/a.jpg"
    assert story.byline == "Eric Stone"


def test_cms_in_digest_toml_resolve_like_feeds(newsroom: Path) -> None:
    toml = newsroom / "digest.toml"
    url = "https://news.example.org/wp-json/wp/v2/posts?_embed"
    toml.write_text(
        toml.read_text().replace("[sources]\n", f'[sources]\ncms = ["{url}", "cms/posts.json"]\n')
    )
    settings = config.load(toml, env={})
    assert settings.sources.cms == (url, str(newsroom / "cms" / "posts.json"))


def test_collect_all_reads_cms_and_one_bad_source_stops_nothing(
    newsroom: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broken = newsroom / "broken.json"
    broken.write_text('{"rss": {"channel": {}}}', encoding="utf-8")
    toml = newsroom / "digest.toml"
    sources = json.dumps([str(broken), str(WORDPRESS), str(JSON_FEED)])
    toml.write_text(toml.read_text().replace("[sources]\n", f"[sources]\ncms = {sources}\n"))
    settings = config.load(toml, env={"DIGEST_SECRET_KEY": "test"})
    result = collect_all(settings, store)
    # 26 feed stories (the day's 11, the archive's 15), 4 WordPress posts, 2 JSON Feed items.
    assert (result.new, result.updated) == (32, 0)
    assert result.failed_sources == [str(broken)]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"{broken}: not a format digest reads; expected WordPress REST API posts "
        "(/wp-json/wp/v2/posts?_embed) or a JSON Feed (https://jsonfeed.org)"
    ]
    again = collect_all(settings, store)
    # Read again as they were: nothing new, nothing changed, so nothing "updated".
    assert (again.new, again.updated) == (0, 0)


# -- real JSON Feeds from the shared corpus ----------------------------------------------


def test_real_json_feeds_1_1_and_1_0() -> None:
    need(FEEDS.is_dir(), f"{FEEDS} is missing (the shared corpus)")
    german = read_cms(str(FEEDS / "3960.json"))  # JSON Feed 1.1
    assert len(german) == 20
    first = german[0]
    assert first.title == "Lecker, lecker"
    assert first.url == "https://journal.3960.org/posts/2020-02-21-lecker-lecker/"
    assert first.published_at == datetime(2020, 2, 21, 17, 8, 6, tzinfo=UTC)
    assert first.byline == "Frank Boës"
    assert first.section == "Lustiges"
    assert german[1].title == "„Sabine“ am Flughafen Amsterdam"
    inessential = read_cms(str(FEEDS / "inessential.json"))  # JSON Feed 1.0
    assert len(inessential) == 20
    assert inessential[0].title == "James Dempsey and the Breakpoints Benefit App Camp for Girls"
    assert all(s.published_at.tzinfo == UTC for s in inessential)


def test_real_truncated_json_feed_and_rss_in_json_are_one_clear_error() -> None:
    need(FEEDS.is_dir(), f"{FEEDS} is missing (the shared corpus)")
    with pytest.raises(InputError, match=r"allthis-partial\.json: not JSON \("):
        read_cms(str(FEEDS / "allthis-partial.json"))
    with pytest.raises(InputError, match=r"ScriptingNews\.json: not a format digest reads"):
        read_cms(str(FEEDS / "ScriptingNews.json"))


def test_a_post_or_item_without_a_valid_date_is_skipped_with_the_feeds_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def post(title: str, **dates: str) -> dict[str, object]:
        link = f"https://news.example.org/{len(title)}/"
        return {"link": link, "title": {"rendered": title}, **dates}

    wordpress = tmp_path / "posts.json"
    wordpress.write_text(
        json.dumps(
            [
                post("No date at all"),
                post("Not a date", date_gmt="sometime", date="soon"),
                post("Dated", date_gmt="2025-12-05T05:00:00"),
            ]
        )
    )
    json_feed = tmp_path / "feed.json"
    json_feed.write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "items": [
                    {"url": "https://news.example.org/x/", "title": "Month 13",
                     "date_published": "2025-13-45T10:00:00Z"},
                    {"url": "https://news.example.org/y/", "title": "Dated",
                     "date_published": "2025-12-04T10:00:00Z"},
                ],
            }
        )
    )  # fmt: skip
    assert [s.title for s in read_cms(str(wordpress))] == ["Dated"]
    assert [s.title for s in read_cms(str(json_feed))] == ["Dated"]
    no_date = "no valid publish date; skipped (a story without a date has no day's edition)"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{wordpress}: entry 1 ('No date at all'): {no_date}",
        f"{wordpress}: entry 2 ('Not a date'): {no_date}",
        f"{json_feed}: entry 1 ('Month 13'): {no_date}",
    ]
