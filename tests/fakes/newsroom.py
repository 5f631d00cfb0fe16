"""A drafted sample edition and its subscribers, for the send tests."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

from digest import config, jobs
from digest.config import Settings
from digest.send import letter_for
from digest.send.base import Letter

ROOT = Path(__file__).resolve().parent.parent.parent
DAY = date(2025, 12, 5)
EDITION = DAY.isoformat()
SECRET = "test-secret"


def copy_newsroom(folder: Path) -> Path:
    """The sample newsroom (digest.toml, subscribers.csv, feed) in `folder`; returns digest.toml."""
    shutil.copytree(ROOT / "examples" / "sample-newsroom", folder / "examples" / "sample-newsroom")
    shutil.copy(ROOT / "digest.toml", folder / "digest.toml")
    shutil.copy(ROOT / "subscribers.csv", folder / "subscribers.csv")
    return folder / "digest.toml"


def drafted(settings: Settings) -> None:
    """Collect the sample feed and draft the 2025-12-05 edition into the settings' store."""
    store = jobs.open_store(settings)
    try:
        jobs.collect(settings, store)
        jobs.draft(settings, store, DAY)
    finally:
        store.close()


def letter(settings: Settings) -> Letter:
    store = jobs.open_store(settings)
    try:
        return letter_for(settings, jobs.render_edition(settings, store, EDITION))
    finally:
        store.close()


def drafted_newsroom(folder: Path, db_url: str) -> Settings:
    """The sample newsroom copied into `folder`, on the database `db_url`, with the
    2025-12-05 edition drafted: what the send tests start from."""
    loaded = config.load(copy_newsroom(folder), env={"DIGEST_SECRET_KEY": SECRET})
    loaded = replace(loaded, database_url=db_url)
    drafted(loaded)
    return loaded


def with_delivery(settings: Settings, **changes: object) -> Settings:
    return replace(settings, delivery=replace(settings.delivery, **changes))


def write_subscribers(path: Path, count: int) -> list[str]:
    """A subscribers CSV of `count` readers; returns their addresses, as stored."""
    emails = [f"reader{i:05d}@example.org" for i in range(count)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        for i, email in enumerate(emails):
            writer.writerow([email, f"Reader {i}"])
    return emails
