"""Page views from an analytics export (CSV): the only honest source for "Most Read".

Accepted columns (case-insensitive, first match wins), so exports from common
tools load without editing:
  url:   url, page, page_path, landing_page, page location
  views: pageviews, views, screenpageviews, hits
  day:   date, day
Dates may be YYYY-MM-DD or YYYYMMDD (GA4 exports).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import date, datetime
from zoneinfo import ZoneInfo

from digest.collect.fetch import Fetcher, fetch
from digest.collect.urls import canonical_url
from digest.errors import InputError
from digest.models import PageViews

log = logging.getLogger("digest.collect")

_URL = ("url", "page", "page_path", "landing_page", "page location", "page_location")
_VIEWS = ("pageviews", "views", "screenpageviews", "screen_page_views", "hits")
_DAY = ("date", "day")
_EXPECTED = (
    f"expected a CSV whose first line names a url column ({', '.join(_URL)}) "
    f"and a views column ({', '.join(_VIEWS)}), and if it has one a day column "
    f"({', '.join(_DAY)})"
)


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    lowered = [h.strip().lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None


def _day(value: str) -> date:
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return datetime.strptime(value, "%Y%m%d").date()
    return date.fromisoformat(value[:10])


def read_pageviews(
    source: str, zone: ZoneInfo, today: date | None = None, fetcher: Fetcher | None = None
) -> list[PageViews]:
    """Rows of (canonical URL, local day, views). Bad rows are reported by line and skipped.

    A file that is not a page-view CSV is one error saying what was expected, and never
    shows what the file holds: pointed at the wrong file (a page, /etc/passwd, a
    spreadsheet of readers), its first line is someone's content, not a header.
    """
    data, base = fetch(source, fetcher)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text; {_EXPECTED}, saved as UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
    except csv.Error:
        header = None
    if not header:
        raise InputError(f"{source}: line 1 is not a CSV header; {_EXPECTED}")
    url_col, views_col, day_col = (
        _column(header, _URL),
        _column(header, _VIEWS),
        _column(header, _DAY),
    )
    if url_col is None or views_col is None:
        raise InputError(
            f"{source}: line 1 names no url column or no views column "
            f"(of its {len(header)} columns); {_EXPECTED}"
        )
    fallback_day = today or datetime.now(zone).date()
    try:
        return _rows(reader, source, base, (url_col, views_col, day_col), fallback_day)
    except csv.Error as exc:
        raise InputError(
            f"{source}: line {reader.line_num}: not CSV ({exc}); {_EXPECTED}"
        ) from None


def _rows(
    reader: Iterator[list[str]],
    source: str,
    base: str,
    columns: tuple[int, int, int | None],
    fallback_day: date,
) -> list[PageViews]:
    url_col, views_col, day_col = columns
    rows: list[PageViews] = []
    for line, record in enumerate(reader, start=2):
        if not record or not any(cell.strip() for cell in record):
            continue
        try:
            url = record[url_col].strip()
            views = int(record[views_col].replace(",", "").strip() or "0")
            day = _day(record[day_col]) if day_col is not None else fallback_day
        except (IndexError, ValueError) as exc:
            log.warning("%s: line %d: skipped (%s)", source, line, exc)
            continue
        if views < 0:
            log.warning("%s: line %d: negative views %d; skipped", source, line, views)
            continue
        if url.startswith("/"):
            # GA exports paths, not URLs; a path is on the newsroom's own site.
            url = base if url == "/" else url
        rows.append(PageViews(url=canonical_url(url), day=day, views=views, source=source))
    return rows
