"""magpipe push/pull against dvc push/pull of the same files to the same folder remote, side by
side in alternating rounds (min/median/max and the ratio of medians), and `magpipe run --pull`
on an empty store against computing the same stages.

The files are the real pipeline's results up to `window` (ingest, split, scale, window: the
SolARED data read, split, scaled and windowed), which magpipe computes here first.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def sh(cmd, cwd, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def row(name, ours, theirs):
    def fmt(xs):
        return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"

    ratio = statistics.median(theirs) / statistics.median(ours)
    return f"| {name} | {fmt(ours)} | {fmt(theirs)} | {ratio:.1f}× |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magpipe", required=True)
    ap.add_argument("--dvc", required=True)
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="magpipe-remote-bench-")
    env = dict(os.environ, SOLARED_DIR=a.data, MAGPIPE_CONFIG_DIR=os.path.join(work, "cfg"))
    env.pop("MAGPIPE_REMOTE", None)
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        shutil.copy(a.pipeline, os.path.join(src, "pipeline.yaml"))
        mp = [a.magpipe, "-q"]
        sh(mp + ["run", "window"], src, env)
        # The same bytes for dvc: every object the chain up to window produced.
        files = []
        for root, _, names in os.walk(os.path.join(src, "artifacts", "objects")):
            files += [os.path.join(root, n) for n in names if not n.startswith(".")]
        size = sum(os.path.getsize(f) for f in files)

        def fresh_clone(name):
            d = os.path.join(work, name)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            shutil.copy(a.pipeline, os.path.join(d, "pipeline.yaml"))
            shutil.copytree(os.path.join(src, ".magpipe"), os.path.join(d, ".magpipe"))
            return d

        def dvc_repo():
            d = os.path.join(work, "dvc")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(os.path.join(d, "data"))
            for i, f in enumerate(files):
                shutil.copy(f, os.path.join(d, "data", f"{i}-{os.path.basename(f)}"))
            sh([a.dvc, "init", "--no-scm", "-q"], d)
            sh([a.dvc, "add", "-q", "data"], d)
            return d

        mp_push, dvc_push, mp_pull, dvc_pull, mp_run_pull, mp_compute = [], [], [], [], [], []
        for i in range(a.rounds):
            remote = os.path.join(work, f"remote-mp-{i}")
            os.makedirs(remote)
            sh(mp + ["remote", "add", f"r{i}", remote, "--default"], src, env)
            mp_push.append(timed(lambda: sh(mp + ["push", "window"], src, env)))
            d = dvc_repo()
            dremote = os.path.join(work, f"remote-dvc-{i}")
            os.makedirs(dremote)
            sh([a.dvc, "remote", "add", "-d", "r", dremote], d)
            dvc_push.append(timed(lambda: sh([a.dvc, "push", "-q"], d)))

            c = fresh_clone(f"clone-{i}")
            mp_pull.append(timed(lambda: sh(mp + ["pull", "window"], c, env)))
            shutil.rmtree(os.path.join(d, ".dvc", "cache"))
            shutil.rmtree(os.path.join(d, "data"))
            dvc_pull.append(timed(lambda: sh([a.dvc, "pull", "-q"], d)))

            c = fresh_clone(f"run-pull-{i}")
            mp_run_pull.append(timed(lambda: sh(mp + ["run", "--pull", "window"], c, env)))
            c = fresh_clone(f"compute-{i}")
            mp_compute.append(timed(lambda: sh(mp + ["run", "window"], c, env)))
            sh(mp + ["remote", "remove", f"r{i}"], src, env)

        print(
            f"Push and pull of the results up to `window` ({len(files)} files, {size / 1e6:.0f} MB) "
            f"to a folder remote on this disk, {a.rounds} alternating rounds, seconds "
            "(min / median / max):\n"
        )
        print("| transfer | magpipe | dvc | dvc ÷ magpipe |")
        print("|---|---|---|---|")
        print(row("push to a folder remote", mp_push, dvc_push))
        print(row("pull into an empty clone", mp_pull, dvc_pull))
        print(
            "\n`magpipe run --pull window` on an empty store against computing the same four "
            "stages:\n"
        )
        print("| | run --pull | compute | compute ÷ pull |")
        print("|---|---|---|---|")
        print(row("up to window", mp_run_pull, mp_compute).replace("| up to", "| up to", 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
