"""magpipe's results in Python: runs, comparisons, stage outputs, status and lineage as polars
(default) or pandas frames.

Every function runs the `magpipe` CLI (the binary the wheel installed beside this package, or
$MAGPIPE_BIN) and reads its JSON output, so what a notebook sees is what the CLI says: the same
store, the same staleness rules, the same messages. Nothing here reads the store itself.

    import magpipe
    magpipe.runs(sweep="seed")                       # one row per sweep point
    magpipe.compare("default", "paper-text")         # what differs
    magpipe.read("tables", "table2_csv")             # Table 2 as a frame
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._cli import Cli, MagpipeError, StaleError, binary, select_args
from ._frames import frame as _frame
from ._frames import metric_cells as _metric_cells

__all__ = [
    "MagpipeError",
    "StaleError",
    "binary",
    "compare",
    "lineage",
    "load",
    "read",
    "run",
    "runs",
    "status",
]

_DEFAULT = "default"


def _utc(unix: float | None):
    if unix is None:
        return None
    return _dt.datetime.fromtimestamp(unix, tz=_dt.timezone.utc)


def _run_row(r: Mapping[str, Any], details: bool) -> dict[str, Any]:
    results = r.get("results", [])
    last = results[-1] if results else None
    signers = sorted({s["signer"] for s in results if s.get("signer")})
    row: dict[str, Any] = {
        "time": _utc(r["started_unix"]),
        "variant": r["base_variant"],
        # The name `status`, `artifact`, `compare` and `read(variant=…)` take for this run.
        "point": r["variant"] or _DEFAULT,
    }
    for k, v in r["overrides"].items():
        row[f"set.{k}"] = v
    row.update(
        {
            "ok": r["ok"],
            "seconds": r["seconds"],
            "targets": " ".join(r["targets"]) or None,
            "key": last["key"] if last else None,
            "signer": ", ".join(signers) or None,
        }
    )
    for s in results:
        for name, v in s["params"].items():
            row[f"params.{s['stage']}.{name}"] = v
    for s in results:
        for m in s["metrics"]:
            if m["detail"] and not details:
                continue
            row.update(_metric_cells(f"metrics.{s['stage']}.{m['name']}", m["value"]))
    return row


def _runs_frame(rows: list[dict[str, Any]], to: str):
    # The run's identity, then its overrides, then params and metrics as the stages come.
    head = ["time", "variant", "point"]
    sets = sorted({k for r in rows for k in r if k.startswith("set.")})
    rest: dict[str, None] = {}
    for r in rows:
        rest.update((k, None) for k in r if k not in rest)
    cols = head + sets + [k for k in rest if k not in head and not k.startswith("set.")]
    return _frame(rows, to, cols)


def _matches(r: Mapping[str, Any], variant: str | None, sweep: Any) -> bool:
    if variant is not None and variant not in (r["base_variant"], r["variant"] or _DEFAULT):
        return False
    over = r["overrides"]
    if sweep is None:
        return True
    if sweep is True:
        return bool(over)
    if sweep is False:
        return not over
    names = [sweep] if isinstance(sweep, str) else list(sweep)
    return all(n in over for n in names)


def runs(
    variant: str | None = None,
    sweep: str | Sequence[str] | bool | None = None,
    *,
    latest: bool = False,
    details: bool = False,
    to: str = "polars",
    project=None,
    pipeline=None,
    store=None,
):
    """One row per run or sweep point in the store's run log (`magpipe runs --json --results`),
    oldest first.

    Columns: `time` (UTC), `variant` (the pipeline variant, `default` for none), `point` (the
    run's own name, `default+seed=2` for a sweep point: what `read(variant=…)` takes), one
    `set.<name>` per override (`set.seed`, `set.ridge.alpha`), `ok`, `seconds`, `targets`,
    `key` (the key of the run's last stage in pipeline order), `signer` (who signed the records
    it pulled from a remote; null for results computed here), every stage's
    `params.<stage>.<name>` as its key has it, and `metrics.<stage>.<name>`: what `magpipe
    compare` shows of each stage (validation RMSE, Table 2 matches, TSS with `.ci_low` and
    `.ci_high`, success counts), numbers as floats.

    `variant` keeps the runs of that variant (or of that one point); `sweep` the points of a
    sweep over these overrides (`"seed"`, `["seed", "ridge.alpha"]`), `True` any sweep point,
    `False` none. `latest` keeps only the last run of each point; `details` adds the per-cell
    metrics (each Table 2 cell).
    """
    cli = Cli(project, pipeline, store)
    logged = cli.json(["runs", "--json", "--results"])
    chosen = [r for r in logged if _matches(r, variant, sweep)]
    if latest:
        last: dict[str, Mapping[str, Any]] = {}
        for r in chosen:
            last.pop(r["variant"] or _DEFAULT, None)
            last[r["variant"] or _DEFAULT] = r
        chosen = list(last.values())
    return _runs_frame([_run_row(r, details) for r in chosen], to)


def compare(
    a: str,
    b: str,
    *more: str,
    to: str = "polars",
    project=None,
    pipeline=None,
    store=None,
):
    """Variants (or sweep points, `default+seed=2`) side by side as `magpipe compare` sees
    them: one row per variant, with the `params.<stage>.<name>` and `metrics.<stage>.<name>`
    columns in which they differ (metrics as in `runs`), and `stale`: the stages each has not
    run, whose results are missing from its row."""
    names = [a, b, *more]
    cli = Cli(project, pipeline, store)
    c = cli.json(["compare", *names, "--format", "json"])
    rows: list[dict[str, Any]] = [
        {"variant": v, "stale": ", ".join(s) or None} for v, s in zip(c["variants"], c["stale"])
    ]
    for name, values in c["params"]:
        for row, v in zip(rows, values):
            row[f"params.{name}"] = v
    for name, values in c["metrics"]:
        stage, _, metric = name.partition(": ")
        if all(v == values[0] for v in values):
            continue
        for row, v in zip(rows, values):
            if v is not None:
                row.update(_metric_cells(f"metrics.{stage}.{metric}", v))
    return _frame(rows, to)


def status(
    *targets: str,
    variant: str | None = None,
    set: Mapping[str, Any] | Sequence[str] | str | None = None,
    to: str = "polars",
    project=None,
    pipeline=None,
    store=None,
):
    """Fresh or stale per stage (`magpipe status --format json`): `stage`, `state`, `key`,
    `summary` (fresh) or `reason` (the first reason it is stale) and `reasons` (all of them),
    `on_remote` (a remote that holds it)."""
    cli = Cli(project, pipeline, store)
    rows = []
    for s in cli.json(["status", *targets, *select_args(variant, set), "--format", "json"]):
        texts = [r.get("text") for r in s.get("reasons") or []]
        rows.append(
            {
                "stage": s["stage"],
                "state": s["state"],
                "key": s.get("key"),
                "summary": s.get("summary"),
                "reason": texts[0] if texts else None,
                "reasons": "; ".join(t for t in texts if t) or None,
                "on_remote": s.get("on_remote"),
            }
        )
    return _frame(
        rows, to, ["stage", "state", "key", "summary", "reason", "reasons", "on_remote"]
    )


def lineage(
    stage: str,
    output: str | None = None,
    *,
    variant: str | None = None,
    set: Mapping[str, Any] | Sequence[str] | str | None = None,
    to: str = "polars",
    project=None,
    pipeline=None,
    store=None,
):
    """The chain from the raw files to a stage's output (`magpipe lineage --format json`), one
    row per stage from the data onward: `stage`, `kind`, `kind_version`, `key`, `started`,
    `finished`, `seconds`, `summary`, `non_default` (params not at their default), `params`
    (JSON), `inputs` (`slot=stage.output` pairs), `signer` and `pulled_from` (for a record
    pulled from a remote). With `to="json"` the CLI's whole object, raw files and lineage hash
    included."""
    cli = Cli(project, pipeline, store)
    target = stage if output is None else f"{stage}:{output}"
    doc = cli.json(["lineage", target, *select_args(variant, set), "--format", "json"])
    if to == "json":
        return doc
    rows = []
    for s in doc["stages"]:
        pulled = s.get("pulled") or {}
        rows.append(
            {
                "stage": s["stage"],
                "kind": s["kind"],
                "kind_version": s["kind_version"],
                "key": s["key"],
                "started": s["started"],
                "finished": s["finished"],
                "seconds": s["seconds"],
                "summary": s["summary"],
                "non_default": ", ".join(s["non_default"]) or None,
                "params": json.dumps(s["params"], sort_keys=True, ensure_ascii=False),
                "inputs": ", ".join(
                    f"{i['slot']}={i['from_stage']}.{i['output']}" for i in s["inputs"]
                )
                or None,
                "signer": pulled.get("signer"),
                "pulled_from": pulled.get("remote"),
            }
        )
    return _frame(rows, to)


def _safetensors(path: Path) -> dict[str, Any]:
    # The format is an 8-byte header length, a JSON header and the raw tensors: read here with
    # numpy alone rather than requiring the safetensors package.
    import numpy as np

    dtypes = {
        "F64": np.float64, "F32": np.float32, "F16": np.float16,
        "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
        "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
        "BOOL": np.bool_,
    }
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor `{name}` has dtype {t['dtype']}, which numpy lacks")
        lo, hi = t["data_offsets"]
        dt = np.dtype(dtypes[t["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(body[lo:hi], dtype=dt).reshape(t["shape"]).copy()
    return out


def load(path, to: str = "polars"):
    """A file as `read` gives a stage's output, by its suffix: for the files inside a folder
    output (a model's safetensors weights, say)."""
    return _load(Path(path), to)


def _load(path: Path, to: str):
    suffix = path.suffix.lower()
    if path.is_dir():
        return path
    if suffix == ".parquet":
        if to == "pandas":
            import pandas as pd

            return pd.read_parquet(path)
        import polars as pl

        return pl.read_parquet(path)
    if suffix == ".csv":
        if to == "pandas":
            import pandas as pd

            return pd.read_csv(path)
        import polars as pl

        return pl.read_csv(path, infer_schema_length=None)
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if suffix == ".safetensors":
        return _safetensors(path)
    return path


def read(
    stage: str,
    output: str | None = None,
    *,
    variant: str | None = None,
    set: Mapping[str, Any] | Sequence[str] | str | None = None,
    to: str = "polars",
    project=None,
    pipeline=None,
    store=None,
):
    """A stage's output (`magpipe artifact STAGE OUTPUT`): Parquet and CSV as a frame, JSON as
    a dict, safetensors as a dict of numpy arrays, anything else (a figure, a folder) as its
    path. Without `output`, a stage with one output gives it and one with several gives
    `{name: path}`.

    A result that is not up to date is never read: `StaleError` says why the stage is stale and
    which `magpipe run` makes it. `variant` and `set` pick the run as `--variant` and `--set`
    do (`variant="default+seed=2"` names a sweep point)."""
    if to not in ("polars", "pandas"):
        raise ValueError(f"to={to!r}: expected polars or pandas")
    cli = Cli(project, pipeline, store)
    sel = select_args(variant, set)
    args = ["artifact", stage, *([output] if output is not None else []), *sel]
    try:
        text = cli.run(args)
    except MagpipeError as e:
        # Told apart by the stage's state, not by the wording of the message.
        try:
            rows = cli.json(["status", stage, *sel, "--format", "json"])
        except MagpipeError:
            raise e from None
        if any(r["stage"] == stage and r["state"] == "stale" for r in rows):
            raise StaleError(e.message, e.returncode, e.argv, e.stderr) from None
        raise
    if output is not None:
        return _load(Path(text.strip()), to)
    paths = dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    if len(paths) == 1:
        return _load(Path(next(iter(paths.values()))), to)
    return {k: Path(v) for k, v in paths.items()}


def run(
    *targets: str,
    variant: str | None = None,
    set: Mapping[str, Any] | Sequence[str] | str | None = None,
    seeds: str | Sequence[int] | None = None,
    to: str = "polars",
    quiet: bool = True,
    project=None,
    pipeline=None,
    store=None,
):
    """`magpipe run` (a sweep with `seeds="1..5"` or `seeds=[1, 4]`); returns the `runs` rows
    of the runs it logged. Unless `quiet`, what the run prints (its reports, a sweep's
    table) is printed too; a failure raises MagpipeError with the CLI's message."""
    cli = Cli(project, pipeline, store)
    before = len(cli.json(["runs", "--json"]))
    args = ["run", *targets, *select_args(variant, set)]
    if seeds is not None:
        args += ["--seeds", seeds if isinstance(seeds, str) else ",".join(map(str, seeds))]
    if quiet:
        args.insert(0, "-q")
    out = cli.run(args)
    if not quiet:
        print(out, end="")
    logged = cli.json(["runs", "--json", "--results"])
    return _runs_frame([_run_row(r, False) for r in logged[before:]], to)


def __getattr__(name: str):
    # `magpipe.__version__`: the wheel's, when installed from one.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("magpipe")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(name)

