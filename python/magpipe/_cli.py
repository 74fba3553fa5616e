"""The `magpipe` binary: where it is, and running it with its errors as Python exceptions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


class MagpipeError(RuntimeError):
    """A `magpipe` command failed. `str(e)` is the command's own one-line message (without its
    `error: ` prefix); `returncode`, `argv` and the whole `stderr` are kept beside it."""

    def __init__(self, message: str, returncode: int, argv: Sequence[str], stderr: str):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.argv = list(argv)
        self.stderr = stderr


class StaleError(MagpipeError):
    """The result asked for is not up to date: the message says why and the command that makes
    it (`run \\`magpipe run STAGE …\\` first`)."""


def _scripts_dirs() -> Iterable[Path]:
    # Where pip puts a wheel's scripts: the environment's own, then the user scheme's (`pip
    # install --user`), as ruff and uv find their binaries.
    yield Path(sysconfig.get_path("scripts"))
    scheme = {"posix": "posix_user", "nt": "nt_user"}.get(os.name)
    if scheme and scheme in sysconfig.get_scheme_names():
        yield Path(sysconfig.get_path("scripts", scheme))


def binary() -> str:
    """The CLI this package runs: $MAGPIPE_BIN (a development build, say), else the one the
    wheel installed beside this package, else `magpipe` on PATH."""
    env = os.environ.get("MAGPIPE_BIN")
    if env:
        if not os.access(env, os.X_OK):
            raise FileNotFoundError(f"MAGPIPE_BIN={env} is not an executable file")
        return env
    exe = "magpipe.exe" if os.name == "nt" else "magpipe"
    for d in _scripts_dirs():
        if (d / exe).is_file():
            return str(d / exe)
    found = shutil.which(exe)
    if found:
        return found
    raise FileNotFoundError(
        "no magpipe binary: install the wheel (make wheel), or set MAGPIPE_BIN to a build "
        "(target/release/magpipe)"
    )


def _message(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: ") :]
    return lines[-1] if lines else "magpipe failed without a message"


class Cli:
    """Where and how to run the CLI: the project folder (the pipeline file's), the pipeline file
    and the store, each as the CLI's own defaults have them when left out."""

    def __init__(self, project=None, pipeline=None, store=None):
        self.project = None if project is None else os.fspath(project)
        self.pipeline = None if pipeline is None else os.fspath(pipeline)
        self.store = None if store is None else os.fspath(store)

    def argv(self, args: Sequence[str]) -> list[str]:
        out = [binary()]
        if self.pipeline is not None:
            out += ["--file", self.pipeline]
        if self.store is not None:
            out += ["--store", self.store]
        return out + list(args)

    def run(self, args: Sequence[str]) -> str:
        """Runs a command and returns its stdout; raises MagpipeError with its message."""
        argv = self.argv(args)
        p = subprocess.run(
            argv, cwd=self.project, capture_output=True, text=True, encoding="utf-8"
        )
        if p.returncode != 0:
            raise MagpipeError(_message(p.stderr), p.returncode, argv, p.stderr)
        if p.stderr:
            # Warnings (`note: …`) are the CLI's to say; pass them on.
            sys.stderr.write(p.stderr)
        return p.stdout

    def json(self, args: Sequence[str]) -> Any:
        return json.loads(self.run(args))


def select_args(variant: str | None, set: Mapping[str, Any] | Sequence[str] | str | None) -> list[str]:
    """`--variant V` and one `--set stage.param=value` per override; a mapping's values are
    written as YAML reads them (JSON is YAML)."""
    out: list[str] = []
    if variant is not None:
        out += ["--variant", variant]
    if set is None:
        return out
    if isinstance(set, str):
        items = [set]
    elif isinstance(set, Mapping):
        items = [
            f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in set.items()
        ]
    else:
        items = list(set)
    for s in items:
        out += ["--set", s]
    return out
