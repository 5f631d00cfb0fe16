"""Shared fixtures: real SQLite and PostgreSQL stores, the sample newsroom in a temp folder.

PostgreSQL runs when DIGEST_TEST_DATABASE_URL is set (.ci/run sets it); each
test gets its own schema, dropped afterwards. Under CI=true a missing tool or
service fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest import config
from digest.store import Store

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-newsroom"
SHARED = ROOT.parent / "shared"
PG_URL = os.environ.get("DIGEST_TEST_DATABASE_URL", "")
IN_CI = bool(os.environ.get("CI"))


def need(condition: bool, reason: str) -> None:
    """Skip on a laptop without the tool; fail under CI, where everything must run."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI is set, so this must run: {reason}")
    pytest.skip(reason)


def _pg_schema_url(base: str) -> tuple[str, str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test."""
    need(bool(PG_URL), "DIGEST_TEST_DATABASE_URL is not set (PostgreSQL tests)")
    from sqlalchemy import create_engine, text

    url, schema = _pg_schema_url(PG_URL)
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def newsroom(tmp_path: Path) -> Path:
    """A copy of the sample newsroom (digest.toml, feed, images, CSVs) in a temp folder."""
    root = tmp_path / "newsroom"
    root.mkdir()
    shutil.copytree(SAMPLE, root / "examples" / "sample-newsroom")
    shutil.copy(ROOT / "digest.toml", root / "digest.toml")
    shutil.copy(ROOT / "subscribers.csv", root / "subscribers.csv")
    if (ROOT / "cron.yaml").exists():
        shutil.copy(ROOT / "cron.yaml", root / "cron.yaml")
    return root


@pytest.fixture
def settings(newsroom: Path) -> config.Settings:
    return config.load(newsroom / "digest.toml", env={"DIGEST_SECRET_KEY": "test-secret"})


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the repository's files."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    from fakes.http import serving_http

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving_http(functools.partial(Quiet, directory=str(ROOT))) as url:
        yield url
