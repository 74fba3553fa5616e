"""The overhead of a command stage that does nothing (spawn, sandbox, hash, commit) and of a no-op
`magpipe run` with it cached, side by side with `dvc repro` of the same one-stage pipeline, changed
and unchanged; alternating runs, min/median/max. Then the all-cached run of the default pipeline.

    python bench/command_overhead.py --magpipe target/release/magpipe --dvc .bench-venv/bin/dvc
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PIPELINE = """version: 1
stages:
  noop:
    kind: command
    run: [{touch}, "{{outputs.out}}"]
    code: [script.txt]
    outputs: {{out: {{path: out.txt}}}}
"""

DVC_YAML = """stages:
  noop:
    cmd: {touch} out.txt
    deps: [script.txt]
    outs: [out.txt]
"""


def timed(cmd, cwd, env=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stats(xs):
    return min(xs), statistics.median(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magpipe", required=True)
    ap.add_argument("--dvc", required=True)
    ap.add_argument("--pipeline", help="the default pipeline.yaml, for its all-cached run")
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    touch = "/usr/bin/touch"
    with tempfile.TemporaryDirectory() as work:
        mp = os.path.join(work, "magpipe")
        dv = os.path.join(work, "dvc")
        for d in (mp, dv):
            os.makedirs(d)
            with open(os.path.join(d, "script.txt"), "w") as f:
                f.write("0\n")
        with open(os.path.join(mp, "pipeline.yaml"), "w") as f:
            f.write(PIPELINE.format(touch=touch))
        with open(os.path.join(dv, "dvc.yaml"), "w") as f:
            f.write(DVC_YAML.format(touch=touch))
        subprocess.run([a.dvc, "init", "--no-scm", "-q"], cwd=dv, check=True)
        m_run = [a.magpipe, "-q", "run"]
        d_run = [a.dvc, "repro", "-q"]
        timed(m_run, mp)
        timed(d_run, dv)
        res = {k: [] for k in ("m_changed", "d_changed", "m_cached", "d_cached")}
        for i in range(a.reps):
            # Changed: the declared code file changes, so the stage reruns (and its output is
            # the same empty file, so early cutoff has nothing downstream to stop).
            for d in (mp, dv):
                with open(os.path.join(d, "script.txt"), "w") as f:
                    f.write(f"{i + 1}\n")
            res["m_changed"].append(timed(m_run, mp))
            res["d_changed"].append(timed(d_run, dv))
            res["m_cached"].append(timed(m_run, mp))
            res["d_cached"].append(timed(d_run, dv))
    print(f"# command stage overhead ({os.cpu_count()} cores, {a.reps} alternating runs; min / median / max s)\n")
    print("| one no-op command stage | magpipe | dvc repro | ratio dvc/magpipe (medians) |")
    print("|---|---|---|---|")
    for what, m, d in [("changed (reruns)", "m_changed", "d_changed"),
                       ("unchanged (cached)", "m_cached", "d_cached")]:
        ms, ds = stats(res[m]), stats(res[d])
        print(f"| {what} | {ms[0]:.3f} / {ms[1]:.3f} / {ms[2]:.3f} | {ds[0]:.3f} / {ds[1]:.3f} / {ds[2]:.3f} | {ds[1] / ms[1]:.1f}× |")
    if a.pipeline:
        st = subprocess.run([a.magpipe, "-q", "-f", a.pipeline, "status", "--format", "json"],
                            capture_output=True, text=True, cwd=os.path.dirname(a.pipeline))
        stale = [s["stage"] for s in json.loads(st.stdout or "[]") if s.get("state") != "fresh"]
        if st.returncode != 0 or stale:
            print(f"\nall-cached run of the default pipeline: not measured, {len(stale)} stages "
                  "are not cached (run `make run` first)")
            return 0
        cached = [timed([a.magpipe, "-q", "-f", a.pipeline, "run"], os.path.dirname(a.pipeline))
                  for _ in range(a.reps)]
        c = stats(cached)
        print(f"\nall-cached `magpipe run` of the default pipeline (ridge included): "
              f"{c[0]:.3f} / {c[1]:.3f} / {c[2]:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
