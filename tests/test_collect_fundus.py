"""The page collector on 30 real article pages (fundus), against their ground truth.

The comparisons are tests/pages_corpus.py's (exact title; time within a minute; the same set
of author names, case and white space folded). bench/bench_pages.py prints the same
table for this code and for another checkout, and docs/benchmarks.md keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import need
from pages_corpus import FUNDUS, Case, load, right_title, scores

from digest.models import Story


@pytest.fixture(scope="module")
def fundus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    need(FUNDUS.is_dir(), f"{FUNDUS} is missing (the shared corpus)")
    return load(tmp_path_factory.mktemp("fundus"))


def test_fundus_titles_dates_and_authors_against_ground_truth(fundus: list[Case]) -> None:
    got = scores(fundus)
    assert (got["pages"], got["stories"]) == (30, 30), "every page has a title, date and URL"
    # Goals: date ≥ 29/30, authors ≥ 27/30 (measured: 30 and 27). The three authors
    # missed: The Portugal News' "TPN" is in the page's text only, the Taipei Times'
    # "AFP, MANILA" (a dateline) likewise, and fundus gives Le Monde's og:article:author
    # ("Le Monde") where the page signs the story "Par Bertrand Bissuel".
    assert got["date"] >= 29
    assert got["authors"] >= 27
    # The goal was 29/30 exact titles; 27 is what a rule blind to the publisher gets.
    # fundus's ground truth is each publisher's parser's choice (og:title for the Daily
    # Mail, the Express and the LA Times, the JSON-LD headline for Wired, CBC and The
    # West Australian), and pages with the same pattern get different answers: Wired
    # and the LA Times both show and share one headline (og:title = <h1>) and give
    # another in JSON-LD; the Daily Mail and the Express, like CBC and The West
    # Australian, share a shorter social title and show the JSON-LD one.
    assert got["title"] >= 27
    missed = sorted(case.publisher for case in fundus if not right_title(case))
    assert missed == ["DailyMail", "Express", "Wired"]
    for case in fundus:
        assert case.story is not None
        assert case.story.published_at.tzinfo == UTC
        assert case.story.url.startswith("https://")
    # The list's order is the prominence.
    prominence = [case.story.prominence for case in fundus if case.story]
    assert prominence == sorted(prominence, reverse=True)


def test_fundus_pages_with_a_lead_picture_give_its_url(fundus: list[Case]) -> None:
    covered = [c for c in fundus if any(i.get("is_cover") for i in c.truth.get("images", []))]
    assert len(covered) == 23
    assert all(c.story is not None and c.story.image_url.startswith("https://") for c in covered)


def test_fundus_headlines_never_carry_the_site_name(fundus: list[Case]) -> None:
    sites = ["| ", " - Los Angeles Times", "Globalnews.ca", "Taipei Times", "The Citizen"]
    sites += ["朝日新聞デジタル", "CBC News", "DER SPIEGEL", "The Independent", "WIRED"]
    for case in fundus:
        assert case.story is not None
        assert not any(site in case.story.title for site in sites), case.story.title


def test_fundus_sections_are_real_sections(fundus: list[Case]) -> None:
    sections = {case.publisher: case.story.section for case in fundus if case.story}
    assert not {"tags", "post", "All", "Uncategorized"} & set(sections.values())
    assert sections["TheGuardian"] == "World news"
    assert sections["RestOfWorld"] == "Global"
    # Its article:section is "tags", its JSON-LD articleSection "gear".
    assert sections["Wired"] == "gear"


def test_fundus_bodies_hold_the_articles_text(fundus: list[Case]) -> None:
    """The main text trafilatura finds holds most of the paragraphs fundus's maintainers
    marked as the article's."""
    covered = 0
    for case in fundus:
        assert case.story is not None
        paragraphs = [
            p for s in case.truth["body"]["sections"] for p in s.get("paragraphs", []) if p
        ]
        body = " ".join(case.story.body.split())
        found = sum(" ".join(p.split())[:60] in body for p in paragraphs)
        covered += found >= 0.5 * len(paragraphs)
    assert covered >= 26  # measured: 28 of 30


def _story(fundus: list[Case], publisher: str) -> Story:
    story = next(case.story for case in fundus if case.publisher == publisher)
    assert story is not None
    return story


def test_named_fundus_pages_exactly(fundus: list[Case]) -> None:
    cbc = _story(fundus, "CBCNews")
    # og:title is another headline, with the site's name: the JSON-LD headline is the story's.
    assert (
        cbc.title
        == "What's next for Gaza, after Yahya Sinwar's appointment as Hamas political head?"
    )
    assert cbc.published_at == datetime(2024, 8, 8, 8, 0, tzinfo=UTC)
    assert cbc.byline == "Yasmine Hassan"
    assert cbc.section == "World"
    assert cbc.image_caption.startswith("Yahya Sinwar, at the time recently freed from jail")
    assert cbc.image_credit == "Adel Hana/Associated Press"

    guardian = _story(fundus, "TheGuardian")
    assert guardian.url == (
        "https://www.theguardian.com/world/2024/feb/24/"
        "death-toll-in-valencia-fire-rises-to-10-as-remains-of-last-missing-person-found"
    )
    assert guardian.byline == "Guardian staff reporter"
    assert (
        guardian.image_caption
        == "The gutted remains of the two buildings, which had about 140 apartments."
    )
    assert guardian.image_credit == "Eva Manez/Reuters"

    lemonde = _story(fundus, "LeMonde")
    assert lemonde.title == (
        "Sophie Binet met en garde Emmanuel Macron sur la « gravité de la situation dans le pays »"
    )
    assert lemonde.published_at == datetime(2023, 8, 30, 12, 52, 8, tzinfo=UTC)
    assert lemonde.image_credit == "BERTRAND GUAY / AFP"

    politico = _story(fundus, "PoliticoEu")
    assert politico.image_credit == "Niall Carson/PA Images via Getty Images"

    tagesschau = _story(fundus, "Tagesschau")
    # Only the JSON-LD has the offset: trafilatura's day would have been 2023-04-28.
    assert tagesschau.published_at == datetime(2023, 4, 28, 15, 23, 42, 981000, tzinfo=UTC)
    assert tagesschau.byline == "Christin Jordan"

    asahi = _story(fundus, "AsahiShimbun")
    assert asahi.title == "宮崎県で震度5弱、高知と宮崎に1メートルの津波注意報 気象庁"
    assert asahi.published_at == datetime(2025, 1, 13, 12, 37, tzinfo=UTC)

    # The page shows and shares "One hundred years ..."; its JSON-LD has the search title.
    latimes = _story(fundus, "LATimes")
    assert latimes.title == "One hundred years at the Coliseum: Much more than a sports venue"
    assert _story(fundus, "GlobalNews").byline == "Samya Kullab and Vasilisa Stepanenko"
    assert _story(fundus, "SpiegelOnline").byline == "Der Spiegel"  # "DER SPIEGEL", titled
