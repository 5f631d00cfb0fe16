"""Campaign tags: UTM parameters on story links only, the canonical URL kept in the store."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import html as lxml_html

from digest import config, jobs
from digest.campaign import tagged
from digest.config import Campaign, Settings
from digest.errors import ConfigError
from digest.tokens import Tokens

DAY = "2025-12-05"


def test_tags_are_added_and_the_rest_of_the_query_kept() -> None:
    tags = {"utm_source": "digest", "utm_content": "lead"}
    assert (
        tagged("https://a.example/x", tags)
        == "https://a.example/x?utm_source=digest&utm_content=lead"
    )
    assert (
        tagged("https://a.example/x?id=7&q=a+b%20c&utm_source=rss#top", tags)
        == "https://a.example/x?id=7&q=a+b%20c&utm_source=digest&utm_content=lead#top"
    )


def test_story_links_carry_the_tags_and_nothing_else_does(settings: Settings) -> None:
    tagged_settings = replace(settings, campaign=Campaign(utm_source="gcn-digest"))
    store = jobs.open_store(tagged_settings)
    jobs.collect(tagged_settings, store)
    edition = jobs.draft(tagged_settings, store, date.fromisoformat(DAY))
    rendered = jobs.render_edition(tagged_settings, store, DAY)
    picks = [edition.lead, *edition.more, *edition.most_read, *edition.related]
    stories = {p.story.url for p in picks if p}
    # The store keeps the canonical URLs: nothing tagged there.
    assert stories and not any("utm_" in url for url in stories)
    assert not any("utm_" in p.story.url for p in jobs.load_edition(store, DAY).more)
    store.close()

    doc = lxml_html.fromstring(rendered.html)
    tokens = Tokens(rendered.token_key)
    contents = []
    for href in doc.xpath("//a/@href"):
        parts = urlsplit(href)
        untagged = parts._replace(
            query="&".join(q for q in parts.query.split("&") if q and not q.startswith("utm_"))
        ).geturl()
        if untagged in stories:
            query = parse_qs(parts.query)
            assert query["utm_source"] == ["gcn-digest"] and query["utm_medium"] == ["email"]
            assert query["utm_campaign"] == [f"digest-{DAY}"]
            contents.append(query["utm_content"][0])
        else:  # unsubscribe, view in browser, the newsroom's website
            assert "utm_" not in href, href
    assert "lead" in contents and "more-1" in contents and "most_read-1" in contents
    assert "related-1" in contents
    assert tokens.unsubscribe_url in doc.xpath("//a/@href")
    # The text part's story links are tagged the same way; its other links are not.
    for line in rendered.text.splitlines():
        if "://" in line and tokens.unsubscribe_url not in line and "/editions/" not in line:
            assert "utm_source=gcn-digest" in line, line
    assert f"/editions/{DAY}\n" in rendered.text


def test_tags_are_off_unless_configured_and_checked(settings: Settings, newsroom: Path) -> None:
    assert settings.campaign.utm_source == ""
    path = newsroom / "digest.toml"
    base = path.read_text()
    for table, error in (
        ('[campaign]\nutm_medium = "email"\n', "needs utm_source"),
        ('[campaign]\nutm_source = "a b"\n', "utm_source 'a b' must be letters"),
    ):
        path.write_text(base + "\n" + table)
        with pytest.raises(ConfigError, match=error):
            config.load(path, env={"DIGEST_SECRET_KEY": "k"})
    path.write_text(base + '\n[campaign]\nutm_source = "gcn"\nutm_campaign = "morning"\n')
    loaded = config.load(path, env={"DIGEST_SECRET_KEY": "k"})
    assert loaded.campaign == Campaign("gcn", "email", "morning")
