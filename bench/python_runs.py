"""magpipe.runs() over a store with 100 sweep points (the issue's target: under a second).

The store: tests/python/pipeline.yaml (the real data through the reference predictors and a
ridge model on 5 % of the training windows) swept over 100 ridge seeds, each point its own
ridge, alarms, tables and evaluation. The sweep is `--set ridge.seed=1,…,100` rather than
`--seeds 1..100`, whose closing seeds report is named after every seed and overflows a file
name at 100. Then runs() is called 5 times after a first call; the median is
reported, with the CLI's own share (`magpipe runs --json --results`)."""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--magpipe", required=True)
ap.add_argument("--repo", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--work", required=True)
ap.add_argument("--points", type=int, default=100)
a = ap.parse_args()

repo = Path(a.repo)
proj = Path(a.work) / "python-runs"
proj.mkdir(parents=True, exist_ok=True)
(proj / "pipeline.yaml").write_text((repo / "tests/python/pipeline.yaml").read_text())
for d in ("models", ".venv", "reference"):
    if not (proj / d).exists():
        (proj / d).symlink_to(repo / d)
env = dict(os.environ, SOLARED_DIR=a.data, MAGPIPE_BIN=a.magpipe)
env.pop("MAGPIPE_STORE", None)
t0 = time.perf_counter()
seeds = ",".join(str(s) for s in range(1, a.points + 1))
subprocess.run([a.magpipe, "-q", "run", "--set", f"ridge.seed={seeds}"], cwd=proj, env=env,
               check=True, stdout=subprocess.DEVNULL)
made = time.perf_counter() - t0

os.environ.update(env)
sys.path.insert(0, str(repo / "python"))
os.chdir(proj)
import magpipe  # noqa: E402

first = magpipe.runs()
assert first.height == a.points, first.height


def timed(f, n=5):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


api = timed(lambda: magpipe.runs())
pandas = timed(lambda: magpipe.runs(to="pandas"))
cli = timed(lambda: subprocess.run([a.magpipe, "runs", "--json", "--results"], env=env,
                                   check=True, stdout=subprocess.DEVNULL))
print(f"## magpipe.runs() over {a.points} sweep points\n")
print(f"store made by `magpipe run --set ridge.seed=1,…,{a.points}` in {made:.1f} s; "
      f"{first.height} rows × {first.width} columns\n")
print("| call | median of 5 |\n|---|---|")
print(f"| `magpipe.runs()` (polars) | {api * 1000:.0f} ms |")
print(f"| `magpipe.runs(to=\"pandas\")` | {pandas * 1000:.0f} ms |")
print(f"| of which `magpipe runs --json --results` | {cli * 1000:.0f} ms |")
