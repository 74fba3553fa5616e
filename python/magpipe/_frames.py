"""Rows of plain values into a polars or pandas frame, and the CLI's metric strings into numbers."""

from __future__ import annotations

import json
import re
from typing import Any

FRAMES = ("polars", "pandas")

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|NaN|nan"
# `0.52 [0.15, 0.82]`, `+0.36 [+0.03, +0.71], p = 0.06`: a value with its interval (and a
# paired comparison's p), as `compare` shows them.
_INTERVAL = re.compile(
    rf"^(?P<v>{_NUM}) \[(?P<lo>{_NUM}), (?P<hi>{_NUM})\](?:, p (?P<op>[=<>≤]) (?P<p>{_NUM}))?$"
)


def _float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def metric_cells(name: str, value: str) -> dict[str, Any]:
    """One metric as columns: a number as a float; a value with an interval as the value and
    `<name>.ci_low`/`.ci_high` (and `.p_value`); anything else (`3/5`, a Table 2 category) as
    the string `compare` prints."""
    # The CLI prints the typographic minus sign.
    plain = value.replace("\u2212", "-").strip()
    x = _float(plain)
    if x is not None:
        return {name: x}
    m = _INTERVAL.match(plain)
    if m:
        out = {
            name: float(m["v"]),
            f"{name}.ci_low": float(m["lo"]),
            f"{name}.ci_high": float(m["hi"]),
        }
        if m["p"] is not None:
            out[f"{name}.p_value"] = float(m["p"])
        return out
    return {name: value}


def _column(values: list[Any]) -> list[Any]:
    """One type per column: numbers stay numbers (ints as floats where floats are mixed in),
    lists and maps become JSON text, and a column mixing kinds becomes text."""
    seen = {type(v) for v in values if v is not None}
    if not seen:
        return values
    if seen <= {bool}:
        return values
    if seen <= {int}:
        return values
    if seen <= {int, float}:
        return [None if v is None else float(v) for v in values]
    if seen <= {str}:
        return values
    if len(seen) == 1 and next(iter(seen)).__name__ == "datetime":
        return values

    def text(v: Any) -> str | None:
        if v is None:
            return None
        if isinstance(v, str):
            return v
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    return [text(v) for v in values]


def frame(rows: list[dict[str, Any]], to: str, columns: list[str] | None = None):
    """A frame of `rows` (missing cells are nulls), columns in first-seen order unless given."""
    if to not in FRAMES:
        raise ValueError(f"to={to!r}: expected one of {', '.join(FRAMES)}")
    if columns is None:
        columns = []
        seen = set()
        for r in rows:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    columns.append(k)
    data = {c: _column([r.get(c) for r in rows]) for c in columns}
    if to == "polars":
        import polars as pl

        # Every cell read before a type is chosen: the CLI's values, not polars' guess from the
        # first rows.
        return pl.DataFrame(data, strict=False, infer_schema_length=None)
    import pandas as pd

    return pd.DataFrame(data, columns=columns)
