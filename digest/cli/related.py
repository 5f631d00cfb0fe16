"""`digest related URL`: the related stories of any stored story, with their scores,
for editors and scripts (digest.related says how they are found)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from digest.cli.base import Command, ConfigOption, console, session

app = typer.Typer()


@app.command(cls=Command)
def related(
    url: Annotated[str, typer.Argument(help="The story's URL, as stored (tracking tags removed).")],
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, max=50, help="How many at most (default: [related] count)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    config_path: ConfigOption = Path("digest.toml"),
) -> None:
    """The stories most alike this one (from [related] days before and after it), at
    least [related] threshold alike, with their scores (0..1)."""
    from digest import related as related_stories
    from digest.collect.urls import canonical_url

    wanted = canonical_url(url.strip()) if "://" in url else url.strip()
    with session(config_path) as (settings, store):
        story, found = related_stories.for_story(store, wanted, settings.related, limit)
    if as_json:
        answer = {
            "story": {"url": story.url, "title": story.title},
            "related": [
                {
                    "url": r.story.url,
                    "title": r.story.title,
                    "published_at": r.story.published_at.isoformat(),
                    "score": r.score,
                }
                for r in found
            ],
        }
        sys.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False) + "\n")
        return
    console.print(f"Related to: {story.title}", markup=False)
    if not found:
        console.print(
            f"(none at least {settings.related.threshold} alike within "
            f"{settings.related.days} days)"
        )
        return
    from rich.table import Table

    table = Table(show_lines=False)
    for column in ("score", "published", "headline", "url"):
        table.add_column(column)
    for r in found:
        table.add_row(
            f"{r.score:.3f}",
            r.story.published_at.astimezone(settings.newsroom.zone).strftime("%Y-%m-%d"),
            r.story.title,
            r.story.url,
        )
    console.print(table)
