"""`digest --help` starts fast because it loads nothing of the pipeline: the commands
import SQLAlchemy, the render stack, the mail backends and the web server when they run
(bench/bench_startup.py measures the time; this checks the cause, not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: What a command needs and `--help` never does.
HEAVY = (
    "sqlalchemy",
    "premailer",
    "mjml",
    "jinja2",
    "lxml",
    "httpx",
    "email_validator",
    "uvicorn",
    "starlette",
    "feedparser",
    "digest.jobs",
    "digest.store",
)

SHOW_IMPORTS = """
import sys
from pathlib import Path
sys.argv = ["digest", *sys.argv[1:]]
from digest.cli import main
try:
    main()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [[], ["send"], ["subscribers"], ["subscribers", "import"]])
def test_help_imports_none_of_the_pipeline(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHOW_IMPORTS, *command, "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "Usage: digest" in done.stdout
    loaded = set(done.stderr.split())
    assert "typer" in loaded  # the check sees what was imported
    assert [name for name in HEAVY if name in loaded] == []


def test_a_command_still_finds_what_it_imports_late(tmp_path: Path) -> None:
    # The late imports are real: a command that needs the store gets it.
    done = subprocess.run(
        [sys.executable, "-m", "digest.cli", "subscribers", "list", "-c", "missing.toml"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("error: missing.toml: no such settings file")
