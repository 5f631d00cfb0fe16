"""The `digest` command as an operator runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DIGEST = [sys.executable, "-m", "digest.cli"]


def digest(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    environment.update(env or {})
    return subprocess.run(
        [*DIGEST, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_run_end_to_end_then_again(newsroom: Path) -> None:
    first = digest("run", "--date", "2025-12-05", cwd=newsroom)
    assert first.returncode == 0, first.stderr
    assert "Edition 2025-12-05" in first.stdout
    assert "9 of 9 recipients sent (9 now)" in first.stdout
    assert "7 copies, one per section preference" in first.stdout
    # Paths as the operator reads them: relative to where they ran the command.
    assert "outbox: var/outbox/2025-12-05\n" in first.stdout
    assert len(list((newsroom / "var/outbox/2025-12-05").glob("*.eml"))) == 9
    assert (newsroom / "var/editions/2025-12-05.html").exists()
    # The bad row is one clear line naming the file and line; the run went on.
    bad = [line for line in first.stderr.splitlines() if "bob@@example.com" in line]
    assert len(bad) == 1 and "subscribers.csv: line 7:" in bad[0]
    second = digest("run", "--date", "2025-12-05", cwd=newsroom)
    assert second.returncode == 0, second.stderr
    assert "9 of 9 recipients sent (0 now)" in second.stdout
    assert len(list((newsroom / "var/outbox/2025-12-05").glob("*.eml"))) == 9


def test_each_stage_alone(newsroom: Path, tmp_path: Path) -> None:
    collected = digest("collect", cwd=newsroom)
    assert collected.returncode == 0, collected.stderr
    assert "26 new stories" in collected.stdout
    drafted = digest("draft", "--date", "2025-12-05", "--json", cwd=newsroom)
    assert drafted.returncode == 0, drafted.stderr
    edition = json.loads(drafted.stdout)
    assert edition["lead"]["title"].startswith("Trump to meet Putin")
    assert edition["lead"]["breakdown"]["total"] == edition["lead"]["score"]
    assert [p["views"] for p in edition["most_read"]] == sorted(
        (p["views"] for p in edition["most_read"]), reverse=True
    )
    table = digest("draft", "--date", "2025-12-05", cwd=newsroom)
    assert "More in News" in table.stdout and "Most Read" in table.stdout
    rendered = digest("render", "2025-12-05", "--out", str(tmp_path / "out"), cwd=newsroom)
    assert rendered.returncode == 0, rendered.stderr
    html = (tmp_path / "out" / "2025-12-05.html").read_text()
    assert "Trump to meet Putin" in html and "%%" not in html
    assert (tmp_path / "out" / "2025-12-05.txt").exists()
    digest("subscribers", "import", "subscribers.csv", cwd=newsroom)
    sent = digest("send", "2025-12-05", cwd=newsroom)
    assert sent.returncode == 0, sent.stderr
    assert "9 of 9 recipients sent" in sent.stdout
    again = digest("send", "2025-12-05", cwd=newsroom)
    assert "(0 now)" in again.stdout


def test_collect_from_a_given_source_and_a_broken_one(newsroom: Path) -> None:
    broken = newsroom / "broken.xml"
    broken.write_text("<html><body>Moved</body>", encoding="utf-8")
    result = digest(
        "collect",
        "--source",
        str(broken),
        "--source",
        "examples/sample-newsroom/feed.xml",
        cwd=newsroom,
    )
    assert result.returncode == 1
    assert "11 new stories" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.xml: not a readable RSS or Atom feed" in errors[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such settings file"),
        ("[newsroom\nname = 1", "not valid TOML"),
        (
            '[newsroom]\nname = "X"\nwebsite = "https://x"\npostal_address = "1 St"\n'
            'time_zone = "Mars/Olympus"\n[sender]\nfrom_email = "a@x.org"\n',
            "is not an IANA time zone",
        ),
        (
            '[newsroom]\nname = "X"\nwebsite = "https://x"\n',
            "[newsroom] postal_address is required",
        ),
        (
            '[newsroom]\nname = "X"\nwebsite = "https://x"\npostal_address = "1 St"\n'
            '[sender]\nfrom_email = "a@x.org"\n[edition]\nmore_count = "many"\n',
            "[edition] more_count must be a whole number",
        ),
    ],
)
def test_bad_settings_give_one_line_and_status_2(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    config = tmp_path / "digest.toml"
    if content is not None:
        config.write_text(content, encoding="utf-8")
    result = digest("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0] and "digest.toml" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["collect"],
        ["draft"],
        ["edit"],
        ["approve"],
        ["render"],
        ["send"],
        ["sends"],
        ["subscribers"],
        ["subscribers", "import"],
        ["subscribers", "show"],
        ["schedule"],
        ["worker"],
        ["web"],
    ],
)
def test_every_command_explains_itself(command: list[str], tmp_path: Path) -> None:
    result = digest(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage:" in result.stdout
    assert "--config" in result.stdout or "Commands" in result.stdout


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = digest("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"digest {version('digest')}\n"


def test_config_before_the_command_as_after_it(newsroom: Path) -> None:
    (newsroom / "digest.toml").rename(newsroom / "paper.toml")
    before = digest("--config", "paper.toml", "collect", cwd=newsroom)
    assert before.returncode == 0, before.stderr
    assert "26 new stories" in before.stdout
    nested = digest("-c", "paper.toml", "subscribers", "list", cwd=newsroom)
    assert nested.returncode == 0, nested.stderr
    # Given both ways, the one after the command wins; either wins over DIGEST_CONFIG.
    both = digest("-c", "missing.toml", "draft", "-c", "paper.toml", cwd=newsroom)
    assert both.returncode == 0, both.stderr
    over_env = digest("-c", "paper.toml", "draft", cwd=newsroom, env={"DIGEST_CONFIG": "x.toml"})
    assert over_env.returncode == 0, over_env.stderr
    missing = digest("-c", "missing.toml", "draft", cwd=newsroom)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: missing.toml: no such settings file")


def test_flags_show_no_value_in_help(tmp_path: Path) -> None:
    # `--dry-run <bool>` reads as if it wanted `--dry-run true`.
    for command in ([], ["send"], ["subscribers"]):
        shown = digest(*command, "--help", cwd=tmp_path, env={"COLUMNS": "100"})
        assert shown.returncode == 0, shown.stderr
        assert "<bool>" not in shown.stdout and "--help " in shown.stdout
    sent = digest("send", "--help", cwd=tmp_path, env={"COLUMNS": "100"}).stdout
    assert "<str>" in sent and "--dry-run  " in sent


def test_sends_of_an_edition_never_sent_is_an_error_line(newsroom: Path) -> None:
    result = digest("sends", "2031-01-01", cwd=newsroom)
    assert result.returncode == 1
    assert result.stderr == "error: no send for edition 2031-01-01\n"
    assert result.stdout == ""


def test_counts_agree_with_their_nouns(newsroom: Path) -> None:
    from digest.cli.base import counted

    assert [counted(n, "source") for n in (0, 1, 2, 1200)] == [
        "0 sources",
        "1 source",
        "2 sources",
        "1,200 sources",
    ]
    assert counted(1, "batch", "batches") == "1 batch" and counted(3, "try", "tries") == "3 tries"
    (newsroom / "one.csv").write_text("email\nann@example.org\n", encoding="utf-8")
    imported = digest("subscribers", "import", "one.csv", cwd=newsroom)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("1 row: 1 added, 0 updated, 0 rejected, 0 duplicates,")
    exported = digest("subscribers", "export", "out.csv", cwd=newsroom)
    assert exported.stdout.startswith("1 subscriber written to out.csv")


def test_unknown_edition_says_what_to_do(newsroom: Path) -> None:
    result = digest("render", "2031-01-01", cwd=newsroom)
    assert result.returncode == 1
    assert (
        "no edition '2031-01-01'" in result.stderr
        and "digest draft --date 2031-01-01" in result.stderr
    )


def test_subscribers_show_tells_what_went_out_to_whom(newsroom: Path) -> None:
    with (newsroom / "subscribers.csv").open("a", encoding="utf-8") as handle:
        handle.write("a_b@example.org,Underscore,,unsubscribed,\naxb@example.org,Lookalike,,,\n")
    assert digest("run", "--date", "2025-12-05", cwd=newsroom).returncode == 0

    ana = digest("subscribers", "show", "Ana.Lopez@Example.com", cwd=newsroom)
    assert ana.returncode == 0, ana.stderr
    lines = ana.stdout.splitlines()
    assert lines[0].startswith("ana.lopez@example.com  Ana Lopez  status: active")
    assert "sections: News;Politics" in lines[0] and "  city: Juneau" in lines
    assert lines[-1].startswith("2025-12-05: sent in batch ")

    # LIKE's "_" would match axb@, who was sent the edition; a_b@ left and was not.
    left = digest("subscribers", "show", "a_b@example.org", cwd=newsroom)
    assert left.returncode == 0, left.stderr
    assert "status: unsubscribed" in left.stdout
    assert "no edition has been sent to this address yet" in left.stdout
    assert "2025-12-05" not in left.stdout
    assert (
        "2025-12-05: sent" in digest("subscribers", "show", "axb@example.org", cwd=newsroom).stdout
    )

    stranger = digest("subscribers", "show", "nobody@example.org", cwd=newsroom)
    assert stranger.returncode == 1
    assert (
        stranger.stderr
        == "error: nobody@example.org is not a subscriber and was never sent anything\n"
    )
    bad = digest("subscribers", "show", "bob@@example.com", cwd=newsroom)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: 'bob@@example.com' is not an e-mail address")


def test_the_command_loads_collectors_and_the_postgresql_dialect_only_when_used(
    tmp_path: Path,
) -> None:
    # Every `digest` command pays for what digest.cli imports: feedparser, httpx and
    # trafilatura belong to a collect, the PostgreSQL dialect to a PostgreSQL store.
    probe = (
        "import sys, digest.cli\n"
        "heavy = ('feedparser', 'trafilatura', 'sqlalchemy.dialects.postgresql')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- issue 8: one line for an operator ----------------------------------------------------


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """stderr as an operator sees it: exactly one `error:` line, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bogus"], "error: No such option: --bogus (see 'digest --help')"),
        (["sned"], "error: No such command 'sned'. Did you mean 'send', 'sends'?"),
        (["draft", "--nope"], "(see 'digest draft --help')"),
        (["subscribers", "import"], "error: Missing argument 'file' (see"),
    ],
)
def test_a_usage_mistake_is_one_error_line_not_a_box(
    argv: list[str], says: str, tmp_path: Path
) -> None:
    result = digest(*argv, cwd=tmp_path)
    assert result.returncode == 2
    assert says in one_error_line(result)
    assert result.stdout == ""


def test_a_group_alone_shows_its_commands(tmp_path: Path) -> None:
    result = digest("subscribers", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "import" in result.stdout and "export" in result.stdout


def test_collect_shows_its_progress_on_a_terminal_and_nothing_in_a_pipe(
    newsroom: Path,
) -> None:
    # FORCE_COLOR makes rich treat stderr as a terminal, as an operator's would be.
    on_terminal = digest(
        "collect",
        "--source",
        "examples/sample-newsroom/feed.xml",
        "--source",
        "nowhere.xml",
        cwd=newsroom,
        env={"FORCE_COLOR": "1", "COLUMNS": "120"},
    )
    assert "collecting" in on_terminal.stderr
    assert "2/2" in on_terminal.stderr  # both sources counted, the one that failed too
    piped = digest("collect", cwd=newsroom)
    assert piped.returncode == 0, piped.stderr
    assert "collecting" not in piped.stderr and piped.stderr == ""


# An edition is never burned on zero recipients (issue 8, case 2).


def test_a_send_to_nobody_is_refused_and_the_edition_can_still_go_out(newsroom: Path) -> None:
    assert digest("collect", cwd=newsroom).returncode == 0
    assert digest("draft", "--date", "2025-12-05", cwd=newsroom).returncode == 0
    # Before any import: nobody to send to. Today's refusal, not a send of 0 of 0.
    refused = digest("send", "2025-12-05", cwd=newsroom)
    assert refused.returncode == 1
    line = one_error_line(refused)
    assert "edition 2025-12-05 has no one to send to" in line
    assert "Nothing was sent or recorded" in line and "digest subscribers import" in line
    assert json.loads(digest("sends", "--json", cwd=newsroom).stdout) == []
    # The list comes in, and the edition goes out to it: it was not burned.
    assert digest("subscribers", "import", "subscribers.csv", cwd=newsroom).returncode == 0
    sent = digest("send", "2025-12-05", cwd=newsroom)
    assert sent.returncode == 0, sent.stderr
    assert "9 of 9 recipients sent (9 now)" in sent.stdout


def test_run_with_its_subscribers_file_missing_collects_and_drafts_but_sends_nothing(
    newsroom: Path,
) -> None:
    (newsroom / "subscribers.csv").rename(newsroom / "moved.csv")
    run = digest("run", "--date", "2025-12-05", cwd=newsroom)
    assert run.returncode == 2
    line = one_error_line(run)
    assert f"[delivery] subscribers_file {newsroom / 'subscribers.csv'}: no such file" in line
    assert "nothing was sent" in line
    # Collect and draft went on (an editor can work on the edition); no send is recorded.
    assert (newsroom / "var/editions/2025-12-05.html").exists()
    assert json.loads(digest("sends", "--json", cwd=newsroom).stdout) == []
    # A send by hand says why there is nobody, and still records nothing.
    by_hand = digest("send", "2025-12-05", cwd=newsroom)
    assert by_hand.returncode == 1
    assert "subscribers_file" in one_error_line(by_hand) and "does not exist" in by_hand.stderr
    # The list is back: the same edition goes out to everyone on it.
    (newsroom / "moved.csv").rename(newsroom / "subscribers.csv")
    again = digest("run", "--date", "2025-12-05", cwd=newsroom)
    assert again.returncode == 0, again.stderr
    assert "9 of 9 recipients sent (9 now)" in again.stdout


def test_run_without_a_named_list_and_nobody_to_send_to_is_refused(newsroom: Path) -> None:
    # No subscribers_file named and no subscribers.csv beside digest.toml: the list is
    # the database's, which is empty. Refused, as `digest send` is.
    toml = newsroom / "digest.toml"
    toml.write_text(toml.read_text().replace('subscribers_file = "subscribers.csv"\n', ""))
    (newsroom / "subscribers.csv").unlink()
    run = digest("run", "--date", "2025-12-05", cwd=newsroom)
    assert run.returncode == 1
    assert "has no one to send to" in one_error_line(run)
    assert json.loads(digest("sends", "--json", cwd=newsroom).stdout) == []


def test_subscribers_list_is_a_table_that_says_what_it_left_out(newsroom: Path) -> None:
    assert digest("subscribers", "import", "subscribers.csv", cwd=newsroom).returncode == 0
    first = digest("subscribers", "list", "--limit", "3", cwd=newsroom)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "active: 9, unsubscribed: 1"
    assert lines[1].split() == ["Email", "Name", "Sections", "Status"]
    assert [line.split()[0] for line in lines[2:5]] == [
        "ana.lopez@example.com",
        "ben.tanaka@example.org",
        "carlos.mendes@example.org",
    ]
    assert lines[5] == "showing 1–3 of 10 subscribers; --offset 3 for more"
    rest = digest("subscribers", "list", "--limit", "0", "--offset", "8", cwd=newsroom)
    assert rest.stdout.splitlines()[-1] == "showing 9–10 of 10 subscribers"
    assert "renee.obrien@example.com" in rest.stdout and "ana.lopez" not in rest.stdout
    left = digest("subscribers", "list", "--status", "unsubscribed", cwd=newsroom)
    assert left.stdout.splitlines()[-1] == "showing 1–1 of 1 unsubscribed subscriber"
    bad = digest("subscribers", "list", "--offset", "-1", cwd=newsroom)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --offset must be 0 or more")


def test_draft_cuts_headlines_at_the_terminal_width_and_names_the_score_parts(
    newsroom: Path,
) -> None:
    assert digest("collect", cwd=newsroom).returncode == 0
    shown = digest("draft", "--date", "2025-12-05", cwd=newsroom, env={"COLUMNS": "60"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    heads = [line for line in lines if line.startswith("   1  0.")]
    assert heads and all(len(line) <= 60 for line in heads)
    # Cut at a word, with an ellipsis: the lead's headline is longer than the room.
    lead = heads[0]
    assert "Trump to meet Putin at…" in lead
    cut = re.search(r"0\.\d{3}  (.*)…", lead).group(1)  # type: ignore[union-attr]
    assert "Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage".startswith(
        cut + " "
    )
    parts = [line.strip() for line in lines if line.strip().startswith("prominence ")]
    assert parts and all(
        re.fullmatch(
            r"prominence \d\.\d\d · recency \d\.\d\d · popularity \d\.\d\d · picture \d\.\d\d.*",
            p,
        )
        for p in parts
    )
    assert "Left out, and why" in shown.stdout and "per-section cap" in shown.stdout
    wide = digest("draft", "--date", "2025-12-05", cwd=newsroom, env={"COLUMNS": "200"})
    assert "Trump to meet Putin at Joint Base Elmendorf-Richardson in Anchorage" in wide.stdout
    as_json = json.loads(digest("draft", "--date", "2025-12-05", "--json", cwd=newsroom).stdout)
    assert {o["reason"] for o in as_json["left_out"]} <= {
        "under_cut",
        "section_cap",
        "dropped",
        "led_recently",
    }
    assert as_json["left_out"] and all(o["why"] for o in as_json["left_out"])
