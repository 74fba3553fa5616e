"""magpipe benchmarks, each measured side by side with its reference in the same run.

Prints medians of repeated wall-clock runs and the ratios the project's targets are stated in.
"""
import argparse
import json
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
    ap.add_argument("--worker", required=True)
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tune", action="store_true",
                    help="also measure trials per hour of a fixed small study: 2 trials × 1 thread "
                         "against 1 trial × 2 threads (a few minutes)")
    ap.add_argument("--train-wall", action="store_true",
                    help="also time `magpipe run` of the four Table 1 trainings, 10 epochs each, "
                         "from an empty train cache (about an hour on 2 cores)")
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
    # The data stages only: the DVC pipeline mirrors these four, and training is benchmarked below.
    subprocess.run(q + ["run", "window"], env=env, check=True, stdout=subprocess.DEVNULL)
    noop, noop_min = wall(q + ["run", "window"], max(a.reps, 10), env=env)
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
    rows.append(("no-op `magpipe run window` (4 stages cached)", noop, "no-op `dvc repro` (same 4 stages)", dv))

    train_rows = train_bench(a)
    wall_train = train_wall(q, env) if a.train_wall else None
    tune_rows = tune_bench(a, env) if a.tune else None

    print("| benchmark | magpipe s | reference | reference s | ratio (magpipe/ref) |")
    print("|---|---|---|---|---|")
    for what, m, ref, r in rows:
        print(f"| {what} | {m:.3f} | {ref} | {r:.3f} | {m / r:.3f} |")
    print()
    print("| training, Table 1 best MagFluxLSTM (B=64, W=110) | windows/s | PyTorch eager, 2 threads | ratio |")
    print("|---|---|---|---|")
    for what, wps, ref in train_rows:
        print(f"| {what} | {wps:.0f} | {ref:.0f} | {wps / ref:.2f} |")
    print()
    print(f"ingest: {npl / ing:.2f}x faster than np.load alone (target: ratio < 1.0)")
    print(f"no-op:  {noop * 1000:.1f} ms (target ≤ 100 ms), {dv / noop:.1f}x faster than DVC (target ≥ 10x)")
    if tune_rows is not None:
        print("\n| tune study (8 random trials, h=32 L=2 MagFluxLSTM, 2 epochs, 5 % of the windows) | wall s | trials/hour |")
        print("|---|---|---|")
        for what, sec, n in tune_rows:
            print(f"| {what} | {sec:.1f} | {n * 3600 / sec:.0f} |")
        print(f"2×1-thread workers vs 1×2-thread: {tune_rows[1][1] / tune_rows[0][1]:.2f}x the trials per hour")
    if wall_train is not None:
        total, per_stage = wall_train
        print(f"\n`magpipe run` of the four Table 1 trainings, 10 epochs each, empty train cache: {total / 60:.1f} min")
        for stage, sec in per_stage:
            print(f"  {stage}: {sec / 60:.1f} min")


TUNE_STAGE = """  tune:
    kind: tune
    default: false
    inputs: {{train: window.train, val: window.val}}
    params:
      num_samples: 8
      max_concurrent: {conc}
      seed: 1
      max_epochs: 2
      subsample: 0.05
      tpe: {{n_startup: 8}}
      fixed: {{threads: {threads}, early_stop: none}}
      space:
        lr: {{loguniform: [1.0e-4, 1.0e-2]}}
        hidden: {{choice: [32]}}
        layers: {{choice: [2]}}
        model: {{choice: [MagFluxLSTM]}}
        loss: {{choice: [hybrid]}}
"""


def tune_bench(a, env):
    """The same 8-trial study (random configurations, so the trials are identical) run as 2
    concurrent 1-thread workers and as 1 worker with 2 threads, each from an empty study."""
    rows = []
    for what, conc, threads in [("2 workers × 1 thread", 2, 1), ("1 worker × 2 threads", 1, 2)]:
        proj = os.path.join(a.work, f"tune-{conc}")
        os.makedirs(proj)
        with open(a.pipeline) as f:
            text = f.read()
        # Only the data stages and the study: cut the shipped pipeline before its first train stage.
        head = text.split("  # The four Table 1 configurations")[0]
        with open(os.path.join(proj, "pipeline.yaml"), "w") as f:
            f.write(head + TUNE_STAGE.format(conc=conc, threads=threads))
        q = [a.magpipe, "-q", "-f", os.path.join(proj, "pipeline.yaml")]
        subprocess.run(q + ["run", "window"], env=env, check=True, stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        subprocess.run(q + ["run", "tune"], env=env, check=True, stdout=subprocess.DEVNULL)
        rows.append((what, time.perf_counter() - t0, 8))
    return rows


TRAIN_STAGES = ["lstm_hybrid", "lstm_mse", "encdec_mse", "encdec_hybrid"]


def train_wall(q, env):
    """Wall time of training the four Table 1 models (10 epochs each) with the data cached."""
    subprocess.run(q + ["run", "window"], env=env, check=True, stdout=subprocess.DEVNULL)
    sets = []
    for s in TRAIN_STAGES:
        sets += ["--set", f"{s}.epochs=10", "--set", f"{s}.early_stop=none"]
    cmd = [q[0], "--log-format", "json"] + q[2:] + ["run"] + TRAIN_STAGES + sets
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    total = time.perf_counter() - t0
    per = []
    for line in out.stderr.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "stage_finished" and e.get("stage") in TRAIN_STAGES:
            per.append((e["stage"], e["seconds"]))
    return total, per


def windows_per_s(cmd):
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


def train_bench(a):
    """magpipe's trainer vs PyTorch eager, alternating, median of `reps` rounds each."""
    here = os.path.dirname(os.path.abspath(__file__))
    ref_cmd = [sys.executable, os.path.join(here, "torch_train.py"), "2", str(a.train_steps)]
    rust2, rust11, bf2, bf11, py = [], [], [], [], []
    for _ in range(max(1, a.reps // 2)):
        py.append(windows_per_s(ref_cmd))
        rust2.append(windows_per_s([a.worker, "bench-train", "2", str(a.train_steps)]))
        # Two independent 1-thread trainers side by side: their aggregate.
        procs = [subprocess.Popen([a.worker, "bench-train", "1", str(a.train_steps)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        rust11.append(sum(float(p.communicate()[0].strip()) for p in procs))
        bf2.append(windows_per_s([a.worker, "bench-train", "2", str(a.train_steps), "bf16-mixed"]))
        procs = [subprocess.Popen([a.worker, "bench-train", "1", str(a.train_steps), "bf16-mixed"],
                                  stdout=subprocess.PIPE, text=True) for _ in range(2)]
        bf11.append(sum(float(p.communicate()[0].strip()) for p in procs))
    ref = statistics.median(py)
    return [
        ("magpipe fp32, 1 process × 2 threads", statistics.median(rust2), ref),
        ("magpipe fp32, 2 processes × 1 thread (aggregate)", statistics.median(rust11), ref),
        ("magpipe bf16-mixed, 1 process × 2 threads", statistics.median(bf2), ref),
        ("magpipe bf16-mixed, 2 processes × 1 thread (aggregate)", statistics.median(bf11), ref),
    ]


if __name__ == "__main__":
    main()
