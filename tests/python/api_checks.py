"""The Python package against a real store (tests/python_api.rs makes it): a default run, the
`slow-trend` variant, a `--seeds 1..3` sweep, and `evaluate` at another level never run (a
stale stage). Every function, polars and pandas, the stale refusal and an error's message.
Run with the project folder as the working directory; exits non-zero at the first failure."""

import math
import sys

import pandas as pd
import polars as pl

import magpipe

TSS = "metrics.evaluate.TSS Ridge (acoustic inputs)"
TABLE2 = "metrics.tables.published Table 2 cells matched in category"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# runs(): one row per run and sweep point, as the CLI's run log has them.
r = magpipe.runs()
check(isinstance(r, pl.DataFrame), f"runs() gives {type(r)}")
check(r.height == 5, f"5 runs (default, 3 seeds, slow-trend), got {r.height}:\n{r}")
check(r["time"].is_sorted(), "oldest first")
# Sweep points run side by side, logged as they finish: put them in seed order.
r = r.sort(pl.col("variant") == "slow-trend", pl.col("set.seed").fill_null(0))
check(r["point"].to_list() == ["default", "default+seed=1", "default+seed=2", "default+seed=3",
                               "slow-trend"], r["point"].to_list())
check(r["variant"].to_list() == ["default"] * 4 + ["slow-trend"], r["variant"].to_list())
check(r["set.seed"].to_list() == [None, 1, 2, 3, None], r["set.seed"].to_list())
check(r.schema["time"] == pl.Datetime("us", "UTC"), r.schema["time"])
check(r["ok"].all(), "every run ok")
check(r["signer"].is_null().all(), "nothing pulled, nothing signed")
# The key is the run's last stage's: evaluate's, which the lineage of evaluate names too.
last = magpipe.lineage("evaluate")
check(r["key"][0] == last["key"][-1], (r["key"][0], last["key"][-1]))
check(r["params.ridge.seed"].to_list() == [0, 1, 2, 3, 0], r["params.ridge.seed"].to_list())
check(r["params.linear_trend.trend_hours"].to_list() == [6, 6, 6, 6, 12], "trend_hours")
check(r.schema[TSS] == pl.Float64, r.schema[TSS])
for c in (TSS, TSS + ".ci_low", TSS + ".ci_high"):
    check(r[c].null_count() == 0, f"{c} in every run")
check(((r[TSS + ".ci_low"] <= r[TSS]) & (r[TSS] <= r[TSS + ".ci_high"])).all(), "interval holds")
check(r[TABLE2].str.contains("/40").all(), r[TABLE2].to_list())
check("metrics.ridge.val derivative RMSE" in r.columns, "the ridge model's validation RMSE")
check(r.schema["metrics.ridge.val derivative RMSE"] == pl.Float64, "RMSE as a number")
check("metrics.alarms.successful ARs (lead ≥ 4 h)" in r.columns, "success counts")
check(not any(c.startswith("metrics.alarms.Table 2 AR") for c in r.columns), "no details")
check(any(c.startswith("metrics.alarms.Table 2 AR") for c in magpipe.runs(details=True).columns),
      "details on request")
# Each seed drew other training windows: its own ridge, its own skill.
seeds = magpipe.runs(sweep="seed")
check(sorted(seeds["set.seed"].to_list()) == [1, 2, 3], seeds["set.seed"].to_list())
check(seeds["key"].n_unique() == 3, "three evaluations")
check(magpipe.runs(variant="slow-trend").height == 1, "one slow-trend run")
check(magpipe.runs(sweep=False).height == 2, "two runs outside the sweep")
p = magpipe.runs(to="pandas")
check(isinstance(p, pd.DataFrame) and len(p) == 5, type(p))
check(list(p.columns) == r.columns, "the same columns in pandas")
check(str(p["time"].dtype).startswith("datetime64"), p["time"].dtype)
check(math.isclose(p[TSS].sum(), r[TSS].sum()), "the same values in pandas")

# compare(): only what differs.
c = magpipe.compare("default", "slow-trend")
check(c["variant"].to_list() == ["default", "slow-trend"], c)
check([x for x in c.columns if x.startswith("params.")] == ["params.linear_trend.trend_hours"],
      c.columns)
check(c["params.linear_trend.trend_hours"].to_list() == [6, 12], c)
check("metrics.evaluate.TSS linear trend (6 h)" in c.columns, c.columns)
check(TSS not in c.columns, "ridge is the same in both: not shown")
check(c["stale"].is_null().all(), "both fully run")
cs = magpipe.compare("default+seed=1", "default+seed=2", to="pandas")
check(isinstance(cs, pd.DataFrame), type(cs))
check(list(cs["params.ridge.seed"]) == [1, 2], cs)

# status(): fresh everywhere, and the stale stage with its reason.
s = magpipe.status()
check((s["state"] == "fresh").all(), s)
st = magpipe.status("evaluate", set={"evaluate.level": 0.9}, to="pandas")
row = st[st["stage"] == "evaluate"].iloc[0]
check(row["state"] == "stale" and "level" in row["reason"], row.to_dict())

# read(): frames, dicts, arrays, paths; never a stale result.
t2 = magpipe.read("tables", "table2_csv")
check(isinstance(t2, pl.DataFrame) and t2.height > 0, t2)
check(isinstance(magpipe.read("tables", "table2_csv", to="pandas"), pd.DataFrame), "pandas csv")
a = magpipe.read("alarms", "alarms")
check(isinstance(a, pl.DataFrame) and "predictor" in a.columns, a.columns)
check(isinstance(magpipe.read("alarms", "alarms", to="pandas"), pd.DataFrame), "pandas parquet")
summary = magpipe.read("ridge", "summary", variant="default+seed=2")
check(isinstance(summary, dict) and summary["kind"] == "model", summary)
crit = magpipe.read("alarms", "criterion")
check(isinstance(crit, dict), crit)
model = magpipe.read("ridge", "model")
check(model.is_dir(), model)
arrays = magpipe.load(model / "ridge.safetensors")
check(arrays["coef"].shape == (16, 12) and arrays["coef"].dtype.name == "float64", arrays)
outs = magpipe.read("tables")
check(set(outs) >= {"table2_csv", "table2"} and all(v.exists() for v in outs.values()), outs)
try:
    magpipe.read("evaluate", "scores", set={"evaluate.level": 0.9})
    raise AssertionError("a stale result was read")
except magpipe.StaleError as e:
    msg = str(e)
    check("not up to date" in msg and "magpipe run evaluate --set evaluate.level=0.9" in msg, msg)
    check(not msg.startswith("error:") and "\n" not in msg, repr(msg))

# An error arrives with the CLI's one-line message.
try:
    magpipe.read("no_such_stage", "x")
    raise AssertionError("no error")
except magpipe.StaleError:
    raise AssertionError("an unknown stage is not stale")
except magpipe.MagpipeError as e:
    check(str(e) == "no stage `no_such_stage`", repr(str(e)))
    check(e.returncode != 0, e.returncode)
try:
    magpipe.compare("default", "no-such-variant")
    raise AssertionError("no error")
except magpipe.MagpipeError as e:
    check("no-such-variant" in str(e), str(e))

# lineage(): the chain from the data to Table 2.
lin = magpipe.lineage("tables", "table2_csv", to="pandas")
check(list(lin["stage"])[0] == "ingest" and list(lin["stage"])[-1] == "tables", list(lin["stage"]))
check(magpipe.lineage("tables", to="json")["lineage_hash"], "the whole object on request")

print("api checks passed", file=sys.stderr)
