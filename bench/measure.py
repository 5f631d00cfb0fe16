"""What the benchmarks share: the sample newsroom in a folder, timing one `digest`
process with its own peak memory, the PostgreSQL to measure on, and the `--quick`
switch (small sizes, one run) that `bench/run.py --quick` sets for every benchmark."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The `digest` command of the virtualenv running the benchmark (`make bench VENV=...`).
DIGEST = Path(sys.executable).with_name("digest")
if not DIGEST.exists():
    DIGEST = ROOT / ".venv" / "bin" / "digest"
#: Set (to "1") by `bench/run.py --quick`; an environment variable, so children see it too.
QUICK_ENV = "DIGEST_BENCH_QUICK"
#: The longest any one child process of a benchmark may take before it is killed.
CHILD_TIMEOUT = 900.0


class Skip(Exception):
    """A benchmark that cannot run on this machine (no PostgreSQL, no corpus): `bench/run.py`
    prints the one line of why and goes on with the others."""


def quick() -> bool:
    """Small sizes and one run: `bench/run.py --quick`, which proves the harness works."""
    return os.environ.get(QUICK_ENV) == "1"


def postgres_url() -> str:
    """The PostgreSQL server the benchmarks use (a schema of their own in it, dropped after):
    DIGEST_BENCH_DATABASE_URL, else DIGEST_TEST_DATABASE_URL, else the local one. Skip if
    it does not answer within 3 s."""
    url = (
        os.environ.get("DIGEST_BENCH_DATABASE_URL")
        or os.environ.get("DIGEST_TEST_DATABASE_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    import psycopg

    try:
        psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3
        ).close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Skip(f"no PostgreSQL at {url.split('@')[-1]} ({first})") from exc
    return url


def peak_kb(pid: int | str = "self") -> int:
    """The peak RSS (VmHWM, kilobytes) of process `pid` since it exec'd its program; 0 if
    it is gone. Not getrusage's ru_maxrss: Linux carries that over from the parent's
    RSS at fork (a child of a 300 MB process reports 300 MB), so a benchmark that has
    grown would add its own size to every child it measured."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_child(pid: int, timeout: float) -> tuple[int, os.struct_rusage, float] | None:
    """wait4 for `pid`, polling, at most `timeout` seconds: (status, its own rusage, its
    peak RSS in MB as last read from /proc while it ran), or None if it is still
    running then (the caller kills it)."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    peak = 0
    while True:
        peak = max(peak, peak_kb(pid))
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            return status, usage, peak / 1024
        if time.monotonic() > deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def sample_newsroom(folder: Path) -> Path:
    """The sample newsroom (its feed, images and digest.toml) copied into `folder`."""
    shutil.copytree(ROOT / "examples" / "sample-newsroom", folder / "examples" / "sample-newsroom")
    shutil.copy(ROOT / "digest.toml", folder / "digest.toml")
    return folder / "digest.toml"


@dataclass
class Measured:
    seconds: float
    peak_mb: float  # the process's own peak RSS (VmHWM, read every 20 ms while it ran)
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # the process's own user + system time


def run_digest(*args: str | Path, env: dict[str, str], timeout: float = CHILD_TIMEOUT) -> Measured:
    """`digest ARGS` as its own process, as an operator runs it; exits if it fails or
    takes longer than `timeout` seconds (then it is killed)."""
    # Output goes to files, not pipes: a command that says more than a pipe holds (64 KB:
    # an import's line per rejected row) would block on a full pipe while we sit in
    # wait4, and the benchmark would hang on its own output.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        started = time.perf_counter()
        process = subprocess.Popen([DIGEST, *args], env=env, stdout=out_file, stderr=err_file)
        # wait4 gives this child's CPU time; its peak RSS is read from /proc as it runs.
        waited = wait_child(process.pid, timeout)
        seconds = time.perf_counter() - started
        if waited is None:
            process.kill()
            process.wait()
            raise SystemExit(f"digest {' '.join(map(str, args))}: killed after {timeout:.0f} s")
        status, usage, peak_mb = waited
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digest {' '.join(map(str, args))} failed:\n{out}\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds, peak_mb, out.strip(), err, cpu)


@dataclass
class Row:
    """One line of `make bench`'s table: a figure beside its reference, measured in the
    same run. `higher_is_better` says which way the ratio should go (rows/s: yes; ms: no)."""

    stage: str
    figure: float
    reference: float
    unit: str
    reference_name: str
    higher_is_better: bool = True
    goal: str = ""
    reference_unit: str = ""  # when not the figure's unit

    @property
    def ratio(self) -> float:
        return self.figure / self.reference if self.reference else float("nan")


def run_child(
    command: list[str],
    *,
    timeout: float = CHILD_TIMEOUT,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> str:
    """Run `command` to its end (killed after `timeout` seconds); its stdout. Its output
    goes to files, never a pipe (run_digest says why); exits, with its stderr, if it fails."""
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        try:
            done = subprocess.run(
                command, stdout=out_file, stderr=err_file, env=env, cwd=cwd, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise SystemExit(f"{command[0]}: killed after {timeout:.0f} s") from exc
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, command))[:200]} failed:\n{out[-2000:]}\n{err[-4000:]}"
        )
    return out
