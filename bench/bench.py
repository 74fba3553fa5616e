"""magpipe benchmarks, each measured side by side with its reference in the same run.

Prints medians of repeated wall-clock runs and the ratios the project's targets are stated in.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time


def wall(cmd, n, cwd=None, env=None):
    """Median wall time of `n` runs of a command (seconds)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


NP_LOAD = (
    "import glob, sys, numpy as np\n"
    "for f in sorted(glob.glob(sys.argv[1] + '/AR*/*.npz')):\n"
    "    z = np.load(f, allow_pickle=True)\n"
    "    [z[k] for k in z.files]\n"
)

DVC_YAML = """stages:
  ingest:
    cmd: cp {ingest_series} series.parquet && cp {ingest_inv} inventory.parquet
    deps: [solared]
    outs: [series.parquet, inventory.parquet]
  split:
    cmd: cp {split} splits.parquet
    deps: [inventory.parquet]
    outs: [splits.parquet]
  scale:
    cmd: cp {scaler} scaler.json && cp {train} train.parquet && cp {val} val.parquet && cp {test} test.parquet
    deps: [series.parquet, splits.parquet]
    outs: [scaler.json, train.parquet, val.parquet, test.parquet]
  window:
    cmd: cp {wtrain} train.safetensors && cp {wval} val.safetensors && cp {windex} index.parquet
    deps: [train.parquet, val.parquet]
    outs: [train.safetensors, val.safetensors, index.parquet]
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magpipe", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--dvc", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    env = dict(os.environ, SOLARED_DIR=a.data)
    mp = a.magpipe
    proj = os.path.join(a.work, "magpipe")
    os.makedirs(proj)
    shutil.copy(a.pipeline, os.path.join(proj, "pipeline.yaml"))
    q = [mp, "-q", "-f", os.path.join(proj, "pipeline.yaml")]

    rows = []
    print(f"# magpipe benchmarks ({os.cpu_count()} cores, medians of {a.reps} runs unless noted)\n", flush=True)

    # 1. Ingest all 57 ARs (decode, validate, write Parquet) vs a Python process that only np.loads.
    subprocess.run(q + ["run", "ingest"], env=env, check=True, stdout=subprocess.DEVNULL)
    ing, ing_min = wall(q + ["run", "--force", "ingest", "ingest"], a.reps, env=env)
    npl, npl_min = wall([sys.executable, "-c", NP_LOAD, a.data], a.reps)
    rows.append(("ingest 57 ARs → Parquet (magpipe process)", ing, "np.load of the same files (python process)", npl))

    # 2. No-op run with everything cached vs DVC's no-op `dvc repro` on the same four stages.
    subprocess.run(q + ["run"], env=env, check=True, stdout=subprocess.DEVNULL)
    noop, noop_min = wall(q + ["run"], max(a.reps, 10), env=env)
    art = lambda stage, out: subprocess.run(
        q + ["artifact", stage, out], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    d = os.path.join(a.work, "dvc")
    os.makedirs(d)
    shutil.copytree(a.data, os.path.join(d, "solared"), ignore=shutil.ignore_patterns("*.md"))
    with open(os.path.join(d, "dvc.yaml"), "w") as f:
        f.write(DVC_YAML.format(
            ingest_series=art("ingest", "series"), ingest_inv=art("ingest", "inventory"),
            split=art("split", "splits"), scaler=art("scale", "scaler"), train=art("scale", "train"),
            val=art("scale", "val"), test=art("scale", "test"), wtrain=art("window", "train"),
            wval=art("window", "val"), windex=art("window", "index")))
    dvc = [a.dvc]
    subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=d, check=True)
    subprocess.run(dvc + ["repro", "-q"], cwd=d, check=True, stdout=subprocess.DEVNULL)
    dv, dv_min = wall(dvc + ["repro", "-q"], a.reps, cwd=d)
    rows.append(("no-op `magpipe run` (4 stages cached)", noop, "no-op `dvc repro` (same 4 stages)", dv))

    print("| benchmark | magpipe s | reference | reference s | ratio (magpipe/ref) |")
    print("|---|---|---|---|---|")
    for what, m, ref, r in rows:
        print(f"| {what} | {m:.3f} | {ref} | {r:.3f} | {m / r:.3f} |")
    print()
    print(f"ingest: {npl / ing:.2f}x faster than np.load alone (target: ratio < 1.0)")
    print(f"no-op:  {noop * 1000:.1f} ms (target ≤ 100 ms), {dv / noop:.1f}x faster than DVC (target ≥ 10x)")


if __name__ == "__main__":
    main()
