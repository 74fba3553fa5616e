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
    ap.add_argument("--train-rounds", type=int, default=5,
                    help="alternating rounds of the training benchmark (0 skips it)")
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

    train_rows, train_notes = train_bench(a, q, env) if a.train_rounds > 0 else ([], [])
    per_epoch = epoch_windows(q, env)
    wall_train = train_wall(q, env) if a.train_wall else None
    tune_rows = tune_bench(a, env) if a.tune else None

    print("| benchmark | magpipe s | reference | reference s | ratio (magpipe/ref) |")
    print("|---|---|---|---|---|")
    for what, m, ref, r in rows:
        print(f"| {what} | {m:.3f} | {ref} | {r:.3f} | {m / r:.3f} |")
    print_train(train_rows, per_epoch, train_notes)
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


# glibc's allocator with the settings magpipe-worker applies at start (worker/src/host.rs), for
# the PyTorch reference run "with magpipe's allocator settings".
TUNED = "glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824"


def side_by_side(cmd, env=None, copies=2):
    """`copies` trainer processes at once: their summed windows/s, system CPU seconds, minor page
    faults and the largest peak resident set in MiB (from wait4, which std's wait does not
    report)."""
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(copies)]
    wps = sys_s = flt = rss = 0.0
    for p in procs:
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        if status != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({status})")
        wps, sys_s, flt = wps + float(out.strip()), sys_s + ru.ru_stime, flt + ru.ru_minflt
        rss = max(rss, ru.ru_maxrss / 1024)
    return wps, sys_s, flt, rss


def measured(cmd, env=None):
    """(windows/s, system CPU seconds, minor page faults, peak MiB) of one trainer process."""
    return side_by_side(cmd, env, copies=1)


def epoch_windows(q, env):
    """Training windows of the default pipeline (one epoch), from window.train's header."""
    path = subprocess.run(q + ["artifact", "window", "train"], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["x"]["shape"][0]


# Row roles: each round's ratios are taken against the PyTorch row and the libtorch-native row
# with the same thread count, so every ratio compares runs made minutes apart.
PYTORCH, NATIVE, OTHER = "pytorch", "native", "other"


def train_rows(a, here, env_of):
    """(model, name, threads, role, run) for every row of the training benchmark."""
    steps = str(a.train_steps)
    w = a.worker
    ref = lambda t, m, env: measured([sys.executable, os.path.join(here, "torch_train.py"), str(t), steps, m], env)
    bt = lambda t, m, prec="fp32", kernels="native": [w, "bench-train", str(t), steps, prec, "cpu", m, kernels]
    rows = []
    for m in ("lstm", "encdec"):
        for t in (1, 2):
            rows += [
                (m, f"PyTorch eager, {t} thread{'s' * (t > 1)} (as users run it)", t, PYTORCH,
                 lambda t=t, m=m: ref(t, m, env_of["plain"])),
                (m, f"magpipe, libtorch native kernels, {t} thread{'s' * (t > 1)}", t, NATIVE,
                 lambda t=t, m=m: measured(bt(t, m), env_of["plain"])),
                (m, f"magpipe, its own engine (portable), {t} thread{'s' * (t > 1)}", t, OTHER,
                 lambda t=t, m=m: measured(bt(t, m, kernels="portable"), env_of["plain"])),
            ]
        rows += [
            (m, "PyTorch eager, 2 threads, magpipe's allocator settings", 2, OTHER,
             lambda m=m: ref(2, m, env_of["tuned"])),
            (m, "magpipe, libtorch native, 2 threads, glibc's allocator defaults", 2, OTHER,
             lambda m=m: measured(bt(2, m), env_of["glibc"])),
            (m, "magpipe, libtorch native, 2 processes × 1 thread (aggregate)", 2, OTHER,
             lambda m=m: side_by_side(bt(1, m), env_of["plain"])),
            (m, "magpipe, own engine, 2 processes × 1 thread (aggregate)", 2, OTHER,
             lambda m=m: side_by_side(bt(1, m, kernels="portable"), env_of["plain"])),
        ]
        if m == "lstm":
            rows += [
                (m, "magpipe bf16-mixed, 2 threads", 2, OTHER, lambda: measured(bt(2, "lstm", "bf16-mixed"), env_of["plain"])),
                (m, "magpipe bf16-mixed, 2 processes × 1 thread (aggregate)", 2, OTHER,
                 lambda: side_by_side(bt(1, "lstm", "bf16-mixed"), env_of["plain"])),
            ]
    return rows


def train_bench(a, q, env):
    """magpipe's trainers (libtorch native and its own engine) vs PyTorch eager on the same model,
    alternating within each round. Returns rows (model, name, [per-round (windows/s, sys s,
    faults, peak MiB, windows)], [ratios to PyTorch], [ratios to libtorch native]) and notes on
    rows not run."""
    here = os.path.dirname(os.path.abspath(__file__))
    plain = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MAGPIPE_MALLOC", "MAGPIPE_KERNELS")}
    env_of = {"plain": plain, "tuned": dict(plain, GLIBC_TUNABLES=TUNED), "glibc": dict(plain, MAGPIPE_MALLOC="default")}
    rows = train_rows(a, here, env_of)
    notes = []
    cpu = json.loads(subprocess.run([a.worker, "info"], capture_output=True, text=True, check=True).stdout)["cpu"]
    if not cpu["bf16"]:
        # Emulated bf16 is an order of magnitude slower than fp32 (performance.md); its rows
        # would take most of the bench's time and say only that.
        rows = [r for r in rows if "bf16" not in r[1]]
        notes.append(f"bf16-mixed rows not run: this CPU ({cpu['model']}, oneDNN ISA {cpu['onednn_isa']}) has no "
                     "bf16 instructions, so libtorch emulates bf16 ([Performance](guide/performance.md)).")
    notes.append(f"CPU: {cpu['model']} (oneDNN ISA {cpu['onednn_isa']}); the own engine's code path: "
                 f"{engine_path(a.worker)}.")
    batch = {"lstm": 64, "encdec": 32}
    runs = {(m, name): [] for m, name, *_ in rows}
    vs_torch = {(m, name): [] for m, name, *_ in rows}
    vs_native = {(m, name): [] for m, name, *_ in rows}
    for r in range(a.train_rounds):
        print(f"training round {r + 1}/{a.train_rounds}", file=sys.stderr, flush=True)
        base = {}
        for m, name, t, role, fn in rows:
            wps, sys_s, flt, rss = fn()
            # Steps (plus 5 warm-up) per process; two processes in the side-by-side rows.
            n = (a.train_steps + 5) * batch[m] * (2 if "aggregate" in name else 1)
            runs[(m, name)].append((wps, sys_s, flt, rss, n))
            if role in (PYTORCH, NATIVE):
                base[(m, t, role)] = wps
            vs_torch[(m, name)].append(wps / base[(m, t, PYTORCH)])
            vs_native[(m, name)].append(wps / base[(m, t, NATIVE)] if (m, t, NATIVE) in base else float("nan"))
    return [(m, name, runs[(m, name)], vs_torch[(m, name)], vs_native[(m, name)]) for m, name, *_ in rows], notes


def engine_path(worker):
    """The code path magpipe's own engine takes on this CPU (avx2+fma, neon or scalar)."""
    out = subprocess.run([worker, "info"], capture_output=True, text=True, check=True).stdout
    return json.loads(out).get("kernels", {}).get("path", "unknown")


def print_train(rows, per_epoch, notes):
    mmm = lambda xs: f"{min(xs):.0f} / {statistics.median(xs):.0f} / {max(xs):.0f}"
    rat = lambda xs: "–" if any(x != x for x in xs) else f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"
    names = {"lstm": "MagFluxLSTM hybrid (h=128 L=4 B=64, W=110)",
             "encdec": "MagFluxEnc-Dec hybrid (h=64 L=4 B=32, W=110, teacher forcing 0.15)"}
    for m in ("lstm", "encdec"):
        sel = [r for r in rows if r[0] == m]
        if not sel:
            continue
        print(f"\n| training, {names[m]}: {len(sel[0][2])} alternating rounds | windows/s min / median / max "
              f"| ratio to PyTorch, same threads, same round | ratio to libtorch native, same threads, same round "
              f"| peak MiB | system s per epoch | minor faults per epoch |")
        print("|---|---|---|---|---|---|---|")
        for _, name, runs, vs_torch, vs_native in sel:
            sys_epoch = statistics.median(s / n for _, s, _, _, n in runs) * per_epoch
            flt_epoch = statistics.median(f / n for _, _, f, _, n in runs) * per_epoch
            rss = statistics.median(r[3] for r in runs)
            print(f"| {name} | {mmm([r[0] for r in runs])} | {rat(vs_torch)} | {rat(vs_native)} | {rss:.0f} "
                  f"| {sys_epoch:.1f} | {flt_epoch:,.0f} |")
    print(f"\n(one epoch = the default pipeline's {per_epoch} training windows; system time and faults are "
          "the whole process's, start-up included, scaled by windows trained; peak MiB is the largest "
          "process's maximum resident set)")
    for n in notes:
        print(f"\n{n}")


if __name__ == "__main__":
    main()
