"""collect: page views counted from web server access logs (a fixture log, the corpus log)."""

from __future__ import annotations

import gzip
import json
import logging
import random
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import SHARED, need

from digest import config, jobs
from digest.collect import collect_all
from digest.collect.accesslogs import AccessLogsRead, read_access_logs
from digest.config import Settings
from digest.errors import InputError
from digest.store import Store

LOG = Path(__file__).parent / "data" / "logs" / "access.log"
SITE = "https://news.example.org/"
JUNEAU = ZoneInfo("America/Juneau")
CORPUS_LOG = SHARED / "corpus" / "logs-elastic-apache" / "apache_logs"

# tests/data/logs/access.log, line by line (33 lines):
# - harbor-opens on 4 Dec (Juneau): reader A (a view, a reload, a 304: one view),
#   reader B's phone by a utm_ link and B's desktop from the same address (two
#   visitors), an Android reader at 00:30 UTC on the 5th (15:30 on the 4th): 4 views;
#   Googlebot: none. On 5 Dec: 09:00 UTC (00:00 local) and reader A again: 2 views.
# - school-board on 4 Dec: bingbot, curl and "-" (robots), a POST and a HEAD (not
#   views), a 304 (a view), a reader at 09:30 +0100 on the 5th (23:30 on the 4th): 2.
# - ferry-schedule: a reader whose agent holds escaped quotes (1); Tiny Tiny RSS and
#   an empty agent (robots). The home page: 1.
# - not views: a .css, a .jpg, a /wp-content/ .png, /wp-admin/, /wp-json/, /feed/, a
#   story's /feed/, /robots.txt, /favicon.ico, a 404 and a 301: 13 with POST and HEAD.
# - malformed: line 11 (not a log line) and line 33 (cut off inside the agent).
FIXTURE_ROWS = [
    ("https://news.example.org/", "2025-12-04", 1),
    ("https://news.example.org/news/ferry-schedule/", "2025-12-04", 1),
    ("https://news.example.org/news/harbor-opens/", "2025-12-04", 4),
    ("https://news.example.org/news/harbor-opens/", "2025-12-05", 2),
    ("https://news.example.org/news/school-board/", "2025-12-04", 2),
]


def _rows(read: AccessLogsRead) -> list[tuple[str, str, int]]:
    return sorted((r.url, r.day.isoformat(), r.views) for r in read.rows)


def _tally(read: AccessLogsRead) -> tuple[int, ...]:
    t = read.files[0]
    return (
        t.lines,
        t.malformed,
        t.first_malformed,
        t.not_page_views,
        t.robots,
        t.repeats,
        t.views,
    )


def test_fixture_log_counts_readers_once_a_day_and_leaves_out_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read = read_access_logs(str(LOG), SITE, JUNEAU)
    assert _rows(read) == FIXTURE_ROWS
    assert {r.source for r in read.rows} == {str(LOG)}
    # lines, malformed, first malformed, not page views, robots, repeats, views
    assert _tally(read) == (33, 2, 11, 13, 6, 2, 10)
    # One warning line for the file, not one per bad line.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{LOG}: skipped 2 lines not in the combined or common log format (the first: line 11)"
    ]


def test_days_are_the_newsroom_days() -> None:
    """The same log for a newsroom on UTC: the two views logged after 00:00 UTC on the
    5th that Juneau counts on the 4th (15:30 and 23:30 there) move to the 5th."""
    read = read_access_logs(str(LOG), SITE, ZoneInfo("UTC"))
    by_day = Counter[str]()
    for row in read.rows:
        by_day[row.day.isoformat()] += row.views
    assert by_day == {"2025-12-04": 6, "2025-12-05": 4}


def test_gzip_and_globs_are_read_and_counted_together(tmp_path: Path) -> None:
    logs = tmp_path / "nginx"
    logs.mkdir()
    shutil.copy(LOG, logs / "access.log")
    with gzip.open(logs / "access.log.1.gz", "wb") as packed:
        packed.write(LOG.read_bytes())
    # gzip is told by the bytes, not the name.
    (logs / "access.log.2").write_bytes((logs / "access.log.1.gz").read_bytes())

    assert _rows(read_access_logs(str(logs / "access.log.1.gz"), SITE, JUNEAU)) == FIXTURE_ROWS
    assert _rows(read_access_logs(str(logs / "access.log.2"), SITE, JUNEAU)) == FIXTURE_ROWS
    both = read_access_logs(str(logs / "access.log*"), SITE, JUNEAU)
    names = [Path(t.path).name for t in both.files]
    assert names == ["access.log", "access.log.1.gz", "access.log.2"]
    # The same visitors on the same days in three files are still one view each.
    assert _rows(both) == FIXTURE_ROWS
    assert [t.views for t in both.files] == [10, 0, 0]
    assert [t.repeats for t in both.files] == [2, 12, 12]
    assert {r.source for r in both.rows} == {str(logs / "access.log*")}


def test_a_cut_off_gzip_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    packed = gzip.compress(LOG.read_bytes() * 50)
    cut = tmp_path / "access.log.3.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match=r"access\.log\.3\.gz: cannot read past line \d+"):
        read_access_logs(str(cut), SITE, JUNEAU)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("/nowhere/access.log", r"/nowhere/access\.log: cannot open \(No such file or directory\); "
         r"check the path, and that this user may read it"),
        ("/nowhere/access.log*", r"/nowhere/access\.log\*: no files match; check the pattern"),
        ("https://news.example.org/access.log", r"access logs are read from local files"),
    ],
)  # fmt: skip
def test_a_log_that_cannot_be_read_is_an_input_error_saying_what_to_do(
    source: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        read_access_logs(source, SITE, JUNEAU)


def test_common_format_counts_addresses_and_says_robots_are_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    common = tmp_path / "access_log"
    common.write_text(
        '192.0.2.1 - - [04/Dec/2025:10:00:00 -0900] "GET /news/a/ HTTP/1.1" 200 100\n'
        '192.0.2.1 - frank [04/Dec/2025:10:01:00 -0900] "GET /news/a/ HTTP/1.1" 200 100\n'
        '192.0.2.2 - - [04/Dec/2025:10:02:00 -0900] "GET /news/a/ HTTP/1.0" 304 -\n'
        '192.0.2.2 - - [04/Dec/2025:10:02:00 -0900] "GET /style.css HTTP/1.0" 200 10\n',
        encoding="utf-8",
    )
    read = read_access_logs(str(common), SITE, JUNEAU)
    assert _rows(read) == [("https://news.example.org/news/a/", "2025-12-04", 2)]
    assert read.files[0].without_agent == 2
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{common}: 2 views come from lines without a user agent (common log format), so "
        "robots among them are counted too; log in the combined format to leave them out"
    ]


def test_what_is_a_page_and_what_is_not(tmp_path: Path) -> None:
    paths = {
        "/feedback/": True,  # a page, though it starts with "feed"
        "/2025/12/04/budget.html": True,
        "/story.php?id=7&utm_source=fb": True,
        "/news/a/?page=2": True,
        "//news/b/": True,  # a path on our site, never another host
        "/news/a/feed": False,
        "/wp-login.php": False,
        "/sitemap.xml": False,
        "/assets/app.js?v=3": False,
        "/fonts/x.woff2": False,
        "/images/PHOTO.JPG": False,
        "/favicon-32x32.png": False,
    }
    log = tmp_path / "pages.log"
    agent = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    log.write_text(
        "".join(
            f'192.0.2.9 - - [04/Dec/2025:10:00:00 -0900] "GET {p} HTTP/1.1" 200 1 "-" "{agent}"\n'
            for p in paths
        ),
        encoding="utf-8",
    )
    urls = {r.url for r in read_access_logs(str(log), "https://news.example.org", JUNEAU).rows}
    assert urls == {
        "https://news.example.org/feedback/",
        "https://news.example.org/2025/12/04/budget.html",
        "https://news.example.org/story.php?id=7",
        "https://news.example.org/news/a/?page=2",
        "https://news.example.org//news/b/",
    }


# -- digest.toml, collect_all and `digest collect --source` --------------------------------


def _with_access_log(newsroom: Path, sources: list[str]) -> Path:
    """The sample newsroom's digest.toml with its page-view CSV replaced by access logs."""
    toml = newsroom / "digest.toml"
    text = toml.read_text(encoding="utf-8")
    start = text.index("pageviews = ")
    end = text.index("\n", start)
    toml.write_text(
        text[:start] + f"access_logs = {json.dumps(sources)}" + text[end:], encoding="utf-8"
    )
    return toml


def test_access_logs_in_digest_toml_resolve_like_other_sources(newsroom: Path) -> None:
    toml = _with_access_log(newsroom, ["logs/access.log*", "/var/log/nginx/access.log"])
    settings = config.load(toml, env={})
    assert settings.sources.access_logs == (
        str(newsroom / "logs" / "access.log*"),
        "/var/log/nginx/access.log",
    )
    assert settings.sources.pageviews == ()


def test_collect_all_logs_an_unreadable_log_and_goes_on(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    result = collect_all(
        settings, store, pageviews=[], access_logs=["/nowhere/access.log", str(LOG)]
    )
    assert result.failed_sources == ["/nowhere/access.log"]
    assert result.pageview_rows == len(FIXTURE_ROWS)
    assert result.new == 26  # the feeds were read as well
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("/nowhere/access.log: cannot open")
    views = store.stories.views_by_url(date(2025, 12, 4), date(2025, 12, 5))
    assert views["https://news.example.org/news/harbor-opens/"] == 6
    # Collecting again replaces the counts, never adds to them.
    collect_all(settings, store, feeds=[], pageviews=[], access_logs=[str(LOG)])
    assert store.stories.views_by_url(date(2025, 12, 4), date(2025, 12, 5)) == views


def test_sources_named_on_the_command_line_go_by_their_names(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    rotated = tmp_path / "access.log.2.gz"
    rotated.write_bytes(gzip.compress(LOG.read_bytes()))
    result = jobs.collect(settings, store, [settings.sources.feeds[0], str(rotated)])
    assert result.failed_sources == []
    assert (result.new, result.pageview_rows) == (11, len(FIXTURE_ROWS))
    # Not digest.toml's CSV: only the log named.
    views = store.stories.views_by_url(date(2025, 12, 4), date(2025, 12, 5))
    assert set(views) == {url for url, _, _ in FIXTURE_ROWS}


# -- end to end: the sample newsroom's Most Read from its own log --------------------------

# Readers per story over 4-5 December (Juneau). The Trump story has two readers, but
# a robot fetched it 40 times and one reader reloaded it 25 times: counting either
# would put it first.
READERS = {
    "where-to-cut-your-christmas-tree-in-juneau": 9,
    "skagways-lone-paramedic-is-suing-the-city-alleging-retaliation-by-fire-department-"
    "officials": 7,
    "gallery-walk-guide-for-friday-dec-5": 5,
    "cbj-seeks-input-on-uses-for-marine-passenger-fees": 4,
    "author-calls-for-climate-storytelling-in-juneau-talk": 3,
    "trump-to-meet-putin-at-joint-base-elmendorf-richardson-in-anchorage": 2,
}
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{}.0) Gecko/20100101 Firefox/{}.0"


def _newsroom_log(path: Path) -> None:
    lines = []
    for s, (slug, readers) in enumerate(READERS.items()):
        for n in range(readers):
            # Spread over both local days; the cbj readers came from Facebook and a newsletter.
            stamp = f"{4 + n % 2:02d}/Dec/2025:{10 + n:02d}:{s:02d}:00 -0900"
            query = ("?fbclid=x1", "?utm_source=digest&utm_medium=email", "", "")[n % 4]
            agent = FIREFOX.format(100 + n, 100 + n)
            lines.append(
                f'198.51.100.{n} - - [{stamp}] "GET /news/{slug}/{query} HTTP/1.1" 200 9000 '
                f'"https://news.example.org/" "{agent}"'
            )
            lines.append(
                f'198.51.100.{n} - - [{stamp}] "GET /images/{slug}.jpg HTTP/1.1" 200 88000 '
                f'"https://news.example.org/news/{slug}/" "{agent}"'
            )
    trump = "/news/" + next(k for k in READERS if k.startswith("trump")) + "/"
    for n in range(40):
        lines.append(
            f'66.249.66.{n} - - [04/Dec/2025:12:{n:02d}:00 -0900] "GET {trump} HTTP/1.1" 200 9000 '
            '"-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"'
        )
    for n in range(25):
        lines.append(
            f'198.51.100.0 - - [04/Dec/2025:13:{n:02d}:00 -0900] "GET {trump} HTTP/1.1" 200 9000 '
            f'"-" "{FIREFOX.format(100, 100)}"'
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_most_read_from_an_access_log_end_to_end(newsroom: Path, store: Store) -> None:
    _newsroom_log(newsroom / "access.log")
    settings = config.load(
        _with_access_log(newsroom, ["access.log"]), env={"DIGEST_SECRET_KEY": "test"}
    )
    collected = jobs.collect(settings, store)
    assert collected.failed_sources == []
    assert collected.pageview_rows == 2 * len(READERS)  # each story on both days
    # The chart as the log counts it, whatever the lead and More show already.
    chart = replace(settings, edition=replace(settings.edition, most_read_repeats=True))
    edition = jobs.draft(chart, store, date(2025, 12, 5))
    assert [(p.story.url.split("/")[-2], p.views) for p in edition.most_read] == [
        (slug, readers) for slug, readers in list(READERS.items())[:5]
    ]


# -- the shared corpus: 10,000 lines of a real blog's Apache log, May 2015 -----------------


@pytest.fixture
def corpus_log() -> Path:
    need(CORPUS_LOG.exists(), f"the shared corpus log is not at {CORPUS_LOG}")
    return CORPUS_LOG


def test_real_apache_log(corpus_log: Path, caplog: pytest.LogCaptureFixture) -> None:
    read = read_access_logs(str(corpus_log), "http://semicomplete.com/", ZoneInfo("UTC"))
    # lines, malformed, first malformed, not page views, robots, repeats, views.
    # Cross-checked with awk on the raw file (-F'"'): GET with status 200 or 304, the same
    # path rules, the same robot words on $6, distinct ip|agent|path|day: 1,619 views,
    # 2,053 robots, 211 repeats; line 8899 is cut off inside its user agent.
    assert _tally(read) == (10_000, 1, 8899, 6116, 2053, 211, 1619)
    assert len(read.rows) == 591
    by_day = Counter[str]()
    totals = Counter[str]()
    for row in read.rows:
        by_day[row.day.isoformat()] += row.views
        totals[row.url.removeprefix("http://semicomplete.com")] += row.views
    assert by_day == {"2015-05-17": 234, "2015-05-18": 450, "2015-05-19": 545, "2015-05-20": 390}
    # Per page, by hand: awk -F'"' '{split($2,r," "); split($3,s," ")} r[1]=="GET" &&
    # r[2]==URL && (s[1]==200||s[1]==304) && $6 !~ ROBOT {print ip "|" $6 "|" day}' | sort -u
    # ssl-latency.html: 77 GET 200/304 lines -> 57 visitor-days.
    assert totals["/blog/geekery/ssl-latency.html"] == 57
    assert totals["/articles/dynamic-dns-with-dhcp/"] == 115  # from 135 lines
    assert totals["/projects/xdotool/"] == 181  # from 219 lines
    assert totals["/articles/ssh-security/"] == 42  # from 55 lines
    assert "/style2.css" not in totals and "/favicon.ico" not in totals
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{corpus_log}: skipped 1 line not in the combined or common log format "
        "(the first: line 8899)"
    ]


def test_real_robots_and_feed_readers_count_for_nothing(corpus_log: Path, tmp_path: Path) -> None:
    names = ("Googlebot", "bingbot", "Baiduspider", "Yahoo! Slurp", "YandexBot", "msnbot",
             "archive.org_bot", "UniversalFeedParser", "Tiny Tiny RSS", "FeedBurner")  # fmt: skip
    with corpus_log.open(encoding="utf-8") as lines:
        robots = [line for line in lines if any(name in line for name in names)]
    assert len(robots) == 1814  # grep -cF, the same names
    only_robots = tmp_path / "robots.log"
    only_robots.write_text("".join(robots), encoding="utf-8")
    read = read_access_logs(str(only_robots), "http://semicomplete.com/", ZoneInfo("UTC"))
    assert read.rows == []
    # awk: 1,657 of them are GETs answered 200 or 304 for a page (the rest are assets,
    # robots.txt, 404s and the like); one of those is line 8899, cut off, so malformed.
    tally = read.files[0]
    assert (tally.robots, tally.malformed, tally.views) == (1656, 1, 0)


# -- a big log is read line by line --------------------------------------------------------


def _big_log(path: Path, lines: int) -> None:
    """A day and a half of 20,000 visitors reading 300 stories, with some assets and a
    robot: nearly every line is a new (visitor, page, day), the most a log can cost."""
    rnd = random.Random(7)
    agents = [FIREFOX.format(v, v) for v in range(80, 130)] + [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    ]
    visitors = [(f"10.{n % 250}.{n // 250}.{n % 7}", rnd.choice(agents)) for n in range(20_000)]
    paths = [f"/news/story-{n}/" for n in range(300)] + ["/static/site.css", "/img/logo.png"]
    minutes = range(0, 2160 * lines, 2160)  # a day and a half, in order
    with path.open("w", encoding="utf-8") as out:
        for (ip, agent), page, minute in zip(
            rnd.choices(visitors, k=lines), rnd.choices(paths, k=lines), minutes, strict=True
        ):
            minute //= lines
            out.write(
                f"{ip} - - [{4 + minute // 1440:02d}/Dec/2025:{minute // 60 % 24:02d}:"
                f'{minute % 60:02d}:00 +0000] "GET {page} HTTP/1.1" 200 5120 '
                f'"https://news.example.org/" "{agent}"\n'
            )


# Distinct (address, agent, story, Juneau day) among its non-robot story requests,
# counted by a separate split()-based loop over the file.
VIEWS = 193_038
# Measured: the peak grows by 7 to 11 MB (RSS); tracemalloc puts the reader's own peak
# at 18 MB, nearly all of it the set of 193,038 visit hashes (about 75 bytes each).
PEAK_MB = 20

MEASURE = """
import resource, sys
from zoneinfo import ZoneInfo
from digest.collect.accesslogs import read_access_logs
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
read = read_access_logs(sys.argv[1], "https://news.example.org/", ZoneInfo("America/Juneau"))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
print((after - before) * scale / 2**20, read.files[0].lines, read.files[0].views)
"""


def test_a_200k_line_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    _big_log(log, 200_000)
    # Held as Python strings, its lines would take the file's size and 49 bytes more each.
    held = (log.stat().st_size + 49 * 200_000) / 2**20
    # A fresh process: this one's peak is whatever an earlier test needed.
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    grown, lines, views = done.stdout.split()
    assert (int(lines), int(views)) == (200_000, VIEWS)
    assert float(grown) < PEAK_MB < held / 2
