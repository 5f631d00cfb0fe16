"""What the benchmarks share: the sample newsroom in a folder, and timing one `digest`
process with its own peak memory."""

from __future__ import annotations

import os
import shutil
import subprocess
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


def run_digest(*args: str | Path, env: dict[str, str]) -> Measured:
    """`digest ARGS` as its own process, as an operator runs it; exits if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [DIGEST, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # wait4 gives this child's own peak RSS (Linux: kilobytes); communicate() after it
    # only drains what is left (the output of these commands is a few lines).
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out, err = (stream.read() if stream else "" for stream in (process.stdout, process.stderr))
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digest {' '.join(map(str, args))} failed:\n{out}\n{err}")
    return Measured(seconds, usage.ru_maxrss / 1024, out.strip(), err)
