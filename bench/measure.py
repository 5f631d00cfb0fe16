"""What the benchmarks share: the sample newsroom in a folder, and timing one `digest`
process with its own peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGEST = ROOT / ".venv" / "bin" / "digest"


def sample_newsroom(folder: Path) -> Path:
    """The sample newsroom (its feed, images and digest.toml) copied into `folder`."""
    shutil.copytree(ROOT / "examples" / "sample-newsroom", folder / "examples" / "sample-newsroom")
    shutil.copy(ROOT / "digest.toml", folder / "digest.toml")
    return folder / "digest.toml"


@dataclass
class Measured:
    seconds: float
    peak_mb: float  # the process's own peak RSS
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # the process's own user + system time


def run_digest(*args: str | Path, env: dict[str, str]) -> Measured:
    """`digest ARGS` as its own process, as an operator runs it; exits if it fails."""
    # Output goes to files, not pipes: a command that says more than a pipe holds (64 KB:
    # an import's line per rejected row) would block on a full pipe while we sit in
    # wait4, and the benchmark would hang on its own output.
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        started = time.perf_counter()
        process = subprocess.Popen([DIGEST, *args], env=env, stdout=out_file, stderr=err_file)
        # wait4 gives this child's own peak RSS (Linux: kilobytes).
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digest {' '.join(map(str, args))} failed:\n{out}\n{err}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds, usage.ru_maxrss / 1024, out.strip(), err, cpu)


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

    @property
    def ratio(self) -> float:
        return self.figure / self.reference if self.reference else float("nan")
