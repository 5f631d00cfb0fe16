"""Wrong settings, environment, database and paths, as a new operator meets them (issue 8,
case 6): each is one `error:` line on stderr naming the file, setting, variable or option
and what to do, exit status 2, and never a traceback or a secret.

Every case runs the `digest` command in a subprocess, as test_cli does. A folder "that
cannot be written" is one with a file in its way: that fails for root as for anyone,
where a chmod would not.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.newsroom import EDITION, SECRET, copy_newsroom, drafted
from test_cli import digest, one_error_line

from digest import config

PASSWORD = "s3cret-pw"  # must never appear in a message


def refused(result: subprocess.CompletedProcess[str], *expected: str, status: int = 2) -> str:
    """The command stopped with one line holding every expected part, and no secret."""
    assert result.returncode == status, (result.returncode, result.stderr)
    line = one_error_line(result)
    for part in expected:
        assert part in line, line
    assert PASSWORD not in result.stderr + result.stdout
    return line


@pytest.fixture(scope="module")
def drafted_newsroom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample newsroom with the 2025-12-05 edition drafted and no subscriber yet."""
    folder = tmp_path_factory.mktemp("drafted")
    toml = copy_newsroom(folder)
    drafted(config.load(toml, env={"DIGEST_SECRET_KEY": SECRET}))
    return folder


@pytest.fixture
def room(drafted_newsroom: Path, tmp_path: Path) -> Path:
    """A copy of the drafted newsroom this test may change."""
    folder = tmp_path / "room"
    shutil.copytree(drafted_newsroom, folder)
    return folder


def edit_toml(room: Path, old: str, new: str) -> None:
    toml = room / "digest.toml"
    text = toml.read_text(encoding="utf-8")
    assert old in text
    toml.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def hanging_server() -> Iterator[int]:
    """A port on 127.0.0.1 that takes connections and never says a word (a database
    host behind a firewall that drops packets looks the same to a client)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


# -- the settings file and the settings in it --------------------------------------------


def test_config_naming_a_folder(room: Path) -> None:
    result = digest("run", "--config", str(room), cwd=room)
    refused(result, f"{room}: is a folder, not a settings file", f"({room / 'digest.toml'})")


SETTINGS_CASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (old line of digest.toml, new line, parts of the message)
    "a misspelt key": (
        "more_count = 8",
        "more_cont = 8",
        ("[edition] more_cont is not a setting", "did you mean 'more_count'?"),
    ),
    "a table digest does not have": (
        "[web]",
        "[foo]\nbar = 1\n\n[web]",
        ("[foo] is not a settings table",),
    ),
    "CSS in brand_color": (
        'brand_color = "#1a4e8a"',
        'brand_color = "red;} body{display:none"',
        ("[newsroom] brand_color", "must be a hex colour such as #1a4e8a"),
    ),
    "a local file that is not a picture as logo_url": (
        'logo_url = "examples/sample-newsroom/images/logo.png"',
        'logo_url = "/etc/passwd"',
        ("[newsroom] logo_url '/etc/passwd' is not a PNG, JPEG, GIF or WebP picture",),
    ),
    "an operator without an address": (
        'operators = ["ops@news.example.org"]',
        'operators = ["ops"]',
        ("[sender] operators: 'ops' is not an address",),
    ),
    "most_read_repeats that is not true or false": (
        "most_read_repeats = false",
        'most_read_repeats = "no"',
        ("[edition] most_read_repeats must be true or false, not 'no'",),
    ),
    "a negative recent_leads": (
        "recent_leads = 3",
        "recent_leads = -1",
        ("[edition] most_read_count and recent_leads must be 0 or more",),
    ),
    "a Most Read window of no hours": (
        "most_read_hours = 24",
        "most_read_hours = 0",
        ("[edition] most_read_hours must be at least 1",),
    ),
    "a note limit of nothing": (
        "[web]",
        "[limits]\nnote_max_chars = 0\n\n[web]",
        ("[limits] note_max_chars must be more than 0",),
    ),
    "a templates folder that is not there": (
        "[web]",
        '[templates]\ndir = "no-such-templates"\n\n[web]',
        ("[templates] dir", "no-such-templates", "is not a folder"),
    ),
}


@pytest.mark.parametrize("case", SETTINGS_CASES, ids=list(SETTINGS_CASES))
def test_a_wrong_setting_is_named(room: Path, case: str) -> None:
    old, new, expected = SETTINGS_CASES[case]
    edit_toml(room, old, new)
    line = refused(digest("draft", "--date", EDITION, cwd=room), *expected)
    assert "digest.toml" in line


ENVIRONMENT_CASES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "DIGEST_SMTP_PORT=abc": (
        {"DIGEST_SMTP_PORT": "abc"},
        ("DIGEST_SMTP_PORT='abc' is not a port number (1 to 65535)",),
    ),
    "DIGEST_BACKEND=pigeon": (
        {"DIGEST_BACKEND": "pigeon"},
        ("DIGEST_BACKEND='pigeon' must be outbox, smtp or sendgrid",),
    ),
    "a URL without its colon": (
        {"DIGEST_DATABASE_URL": "postgres//x"},
        ("DIGEST_DATABASE_URL 'postgres//x' is not a database URL", "postgresql+psycopg://"),
    ),
    "nonsense for a URL": (
        {"DIGEST_DATABASE_URL": "nonsense"},
        ("DIGEST_DATABASE_URL 'nonsense' is not a database URL",),
    ),
    "a malformed URL with a password": (
        {"DIGEST_DATABASE_URL": f"postgres//digest:{PASSWORD}@db.example/news"},
        ("DIGEST_DATABASE_URL 'postgres//digest:***@db.example/news' is not a database URL",),
    ),
    "a database digest has no driver for": (
        {"DIGEST_DATABASE_URL": f"mysql://digest:{PASSWORD}@127.0.0.1/news"},
        ("DIGEST_DATABASE_URL 'mysql://digest:***@127.0.0.1/news'", "driver is not installed"),
    ),
    "PostgreSQL not listening": (
        {"DIGEST_DATABASE_URL": f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x"},
        (
            "DIGEST_DATABASE_URL postgresql+psycopg://u:***@127.0.0.1:1/x: cannot open the "
            "database",
            "Connection refused",
            "check that it is running and reachable",
        ),
    ),
    "a password in the URL's query": (
        {"DIGEST_DATABASE_URL": f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}"},
        ("postgresql://u@127.0.0.1:1/x?password=***: cannot open the database",),
    ),
    "a SQLite file whose folder cannot be made": (
        {"DIGEST_DATABASE_URL": "sqlite:///subscribers.csv/digest.db"},
        ("DIGEST_DATABASE_URL 'sqlite:///subscribers.csv/digest.db': cannot create",),
    ),
}


@pytest.mark.parametrize("case", ENVIRONMENT_CASES, ids=list(ENVIRONMENT_CASES))
def test_a_wrong_environment_variable_is_named(room: Path, case: str) -> None:
    env, expected = ENVIRONMENT_CASES[case]
    refused(digest("sends", cwd=room, env=env), *expected)


def test_a_database_that_never_answers_is_given_up_on(room: Path, hanging_server: int) -> None:
    url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{hanging_server}/x"
    try:
        # Store.open's connect_timeout is 10 s; without one, libpq waits for ever.
        result = digest("sends", cwd=room, env={"DIGEST_DATABASE_URL": url}, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail("digest kept waiting for a database that never answers")
    refused(result, f"127.0.0.1:{hanging_server}/x: cannot open the database", "timeout")


def test_a_database_made_by_a_newer_digest(room: Path) -> None:
    with sqlite3.connect(room / "var" / "digest.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'from_the_future'")
    refused(
        digest("sends", cwd=room),
        "[storage] data_dir",
        "the database's schema is not one this digest knows",
        "from_the_future",
    )


def test_a_database_url_in_digest_toml_is_masked(room: Path) -> None:
    edit_toml(
        room,
        'data_dir = "var"',
        f'data_dir = "var"\ndatabase_url = "postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x"',
    )
    refused(digest("sends", cwd=room), "digest.toml: [storage] database_url", "u:***@127.0.0.1")


# -- folders the settings name -----------------------------------------------------------


def test_a_data_dir_that_cannot_be_written(room: Path) -> None:
    edit_toml(room, 'data_dir = "var"', 'data_dir = "subscribers.csv/var"')
    refused(
        digest("draft", "--date", EDITION, cwd=room),
        "digest.toml: [storage] data_dir",
        "subscribers.csv/var: cannot write there: a file is in the way",
    )


def test_an_outbox_that_cannot_be_written_stops_the_send_before_anything_is_recorded(
    room: Path,
) -> None:
    edit_toml(room, 'outbox_dir = "var/outbox"', 'outbox_dir = "subscribers.csv/outbox"')
    assert digest("subscribers", "import", "subscribers.csv", cwd=room).returncode == 0
    refused(
        digest("send", EDITION, cwd=room),
        "digest.toml: [delivery] outbox_dir",
        "subscribers.csv/outbox: cannot write there: a file is in the way",
    )
    # No batch left in doubt, no send to resume: fix the setting and send.
    assert digest("sends", "--json", cwd=room).stdout.strip() == "[]"
    refused(
        digest("send", EDITION, "--test", "ed@news.example.org", cwd=room),
        "[delivery] outbox_dir",
    )


# -- values on the command line ------------------------------------------------------------


def test_a_test_send_to_something_that_is_not_an_address(drafted_newsroom: Path) -> None:
    refused(
        digest("send", EDITION, "--test", "not-an-address", cwd=drafted_newsroom),
        "--test 'not-an-address' is not an e-mail address",
    )


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("subscribers.csv", "--out subscribers.csv: cannot write there: it is a file"),
        ("subscribers.csv/out", "--out subscribers.csv/out: cannot write there: a file is in"),
    ],
    ids=["naming a file", "under a file"],
)
def test_render_out_that_cannot_be_written(drafted_newsroom: Path, out: str, expected: str) -> None:
    refused(digest("render", EDITION, "--out", out, cwd=drafted_newsroom), expected)


def test_render_out_where_a_folder_has_the_edition_s_name(room: Path) -> None:
    (room / "out" / f"{EDITION}.html").mkdir(parents=True)
    refused(
        digest("render", EDITION, "--out", "out", cwd=room),
        f"--out out: cannot write out/{EDITION}.html (it is a folder)",
    )


OPERATOR_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "importing a file that is not there": (
        ["subscribers", "import", "missing.csv"],
        ("missing.csv: no such file; give the path of a CSV with an email column",),
    ),
    "importing a folder": (
        ["subscribers", "import", "examples"],
        ("examples: is a folder",),
    ),
    "exporting where a file is in the way": (
        ["subscribers", "export", "subscribers.csv/all.csv"],
        ("subscribers.csv/all.csv: cannot write it (a file is in the way",),
    ),
    "exporting into a folder that is not there": (
        ["subscribers", "export", "no-such-folder/all.csv"],
        ("no-such-folder/all.csv: cannot write it (no such folder)",),
    ),
    "removing something that is not an address": (
        ["subscribers", "remove", "bob@@example.com"],
        ("'bob@@example.com' is not an e-mail address",),
    ),
    "listing a status that does not exist": (
        ["subscribers", "list", "--status", "gone"],
        ("--status 'gone' is not one of active, bounced, complained, unsubscribed",),
    ),
    "a port past 65535": (
        ["web", "--port", "99999"],
        ("--port 99999 is not a port number (1 to 65535)",),
    ),
    "a host that does not resolve": (
        ["web", "--host", "no-such-host.invalid", "--port", "8765"],
        ("--host 'no-such-host.invalid': no such address",),
    ),
    "a month 13": (["draft", "--date", "2025-13-05"], ("'2025-13-05' is not a date",)),
    "a send of no batches": (["send", EDITION, "--limit", "0"], ("--limit must be 1 or more",)),
    "a worker that polls without pause": (
        ["worker", "--once", "--poll", "-1"],
        ("--poll must be 0.1 or more, not -1",),
    ),
}


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=list(OPERATOR_CASES))
def test_a_wrong_value_on_the_command_line(drafted_newsroom: Path, case: str) -> None:
    args, expected = OPERATOR_CASES[case]
    refused(digest(*args, cwd=drafted_newsroom), *expected)


def test_web_on_a_port_in_use(drafted_newsroom: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = digest("web", "--port", str(port), cwd=drafted_newsroom)
    refused(result, f"--host 127.0.0.1 --port {port}: cannot listen there (already in use)")


def test_a_subscribers_file_that_is_not_utf8(room: Path) -> None:
    spreadsheet = "email,name\nanna@example.org,Anna Müller\n"  # saved as Latin-1, not UTF-8
    (room / "latin1.csv").write_bytes(spreadsheet.encode("latin-1"))
    refused(
        digest("subscribers", "import", "latin1.csv", cwd=room),
        "latin1.csv: not UTF-8 text; save it as CSV UTF-8",
        status=1,
    )


def test_a_schedule_file_that_is_a_folder(room: Path) -> None:
    edit_toml(room, "[web]", '[schedule]\nfile = "examples"\n\n[web]')
    refused(
        digest("schedule", "--next", "1", cwd=room),
        f"{room / 'examples'}: cannot read the schedule",
        "[schedule] file",
    )
