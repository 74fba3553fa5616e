"""magpipe push/pull against dvc push/pull of the same files to the same remote (a folder on
this disk, and a real S3 server, SeaweedFS, on 127.0.0.1), side by side in alternating rounds
(min/median/max and the ratio of medians); `magpipe run --pull` on an empty store against
computing the same stages; and, unless --no-full, the whole default pipeline pulled on a fresh
clone against a cold `magpipe run` of it (what `make run` does on a fresh machine).

The transferred files are the real pipeline's results up to `window` (ingest, split, scale,
window: the SolARED data read, split, scaled and windowed), which magpipe computes here first.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

S3_KEY, S3_SECRET = "magpipe-bench", "magpipe-bench-secret"


def sh(cmd, cwd, env=None):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {cwd}:\n{r.stdout}\n{r.stderr}")
    return r.stdout


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def fmt(xs):
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def row(name, ours, theirs):
    ratio = statistics.median(theirs) / statistics.median(ours)
    return f"| {name} | {fmt(ours)} | {fmt(theirs)} | {ratio:.1f}× |"


def free_base():
    """A base port with the seven after it free (SeaweedFS mini takes base..base+6 and their
    gRPC ports 10000 above)."""
    for base in range(21000, 30000, 10):
        ports = [base + i for i in range(7)] + [base + 10000 + i for i in range(7)]
        ok = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    sys.exit("no free ports for the S3 server")


def weed_version(weed):
    out = subprocess.run([weed, "version"], capture_output=True, text=True).stdout
    words = out.split()
    return words[2] if len(words) > 2 else "(version unknown)"


class Weed:
    """A real SeaweedFS server (its S3 gateway) on 127.0.0.1, with its data under `dir`."""

    def __init__(self, weed, dir):
        os.makedirs(dir, exist_ok=True)
        self.base = free_base()
        p = lambda i: str(self.base + i)  # noqa: E731
        self.log = open(os.path.join(dir, "weed.log"), "w")
        self.proc = subprocess.Popen(
            [weed, "mini", f"-dir={dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-admin.ui=false", "-bucket=bench", f"-master.port={p(0)}", f"-volume.port={p(1)}",
             f"-filer.port={p(2)}", f"-s3.port={p(3)}", f"-webdav.port={p(4)}",
             f"-admin.port={p(5)}", f"-debug.port={p(6)}", "-s3.port.iceberg=0",
             "-s3.port.lance=0"],
            env=dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET),
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{p(3)}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{p(2)}/buckets/bench/", timeout=2)
                return
            except Exception:
                time.sleep(0.25)
        self.stop()
        sys.exit(f"SeaweedFS did not start; its log: {self.log.name}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magpipe", required=True)
    ap.add_argument("--dvc", required=True)
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--weed", help="SeaweedFS's `weed` (make s3server); no S3 rows without it")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-full", action="store_true",
                    help="skip the whole pipeline (a cold run of it takes most of an hour)")
    a = ap.parse_args()

    repo = os.path.dirname(os.path.abspath(a.pipeline))
    work = tempfile.mkdtemp(prefix="magpipe-remote-bench-")
    env = dict(os.environ, SOLARED_DIR=a.data, MAGPIPE_CONFIG_DIR=os.path.join(work, "cfg"),
               AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
    env.pop("MAGPIPE_REMOTE", None)
    weed = None
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        shutil.copy(a.pipeline, os.path.join(src, "pipeline.yaml"))
        mp = [a.magpipe, "-q"]
        # Pushes sign their records, as a team's would.
        sh(mp + ["key", "generate", "bench"], src, env)
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

        places = [("a folder remote on this disk", "folder")]
        if a.weed:
            weed = Weed(a.weed, os.path.join(work, "s3"))
            version = weed_version(a.weed)
            places.append((f"SeaweedFS {version} (S3) on 127.0.0.1", "s3"))

        def remote_url(kind, name):
            if kind == "folder":
                d = os.path.join(work, name)
                os.makedirs(d)
                return d, [], []
            return (f"s3://bench/{name}", ["--endpoint", weed.endpoint],
                    [["endpointurl", weed.endpoint]])

        rows = []
        run_pull, compute = [], []
        for label, kind in places:
            mp_push, dvc_push, mp_pull, dvc_pull = [], [], [], []
            for i in range(a.rounds):
                url, mp_args, dvc_opts = remote_url(kind, f"remote-mp-{kind}-{i}")
                sh(mp + ["remote", "add", f"r{i}", url, "--default"] + mp_args, src, env)
                mp_push.append(timed(lambda: sh(mp + ["push", "window"], src, env)))
                d = dvc_repo()
                durl, _, _ = remote_url(kind, f"remote-dvc-{kind}-{i}")
                sh([a.dvc, "remote", "add", "-d", "r", durl], d, env)
                for k, v in dvc_opts:
                    sh([a.dvc, "remote", "modify", "r", k, v], d, env)
                dvc_push.append(timed(lambda: sh([a.dvc, "push", "-q"], d, env)))

                c = fresh_clone(f"clone-{kind}-{i}")
                mp_pull.append(timed(lambda: sh(mp + ["pull", "window"], c, env)))
                shutil.rmtree(os.path.join(d, ".dvc", "cache"))
                shutil.rmtree(os.path.join(d, "data"))
                dvc_pull.append(timed(lambda: sh([a.dvc, "pull", "-q"], d, env)))

                if kind == "folder":
                    c = fresh_clone(f"run-pull-{i}")
                    run_pull.append(timed(lambda: sh(mp + ["run", "--pull", "window"], c, env)))
                    c = fresh_clone(f"compute-{i}")
                    compute.append(timed(lambda: sh(mp + ["run", "window"], c, env)))
                sh(mp + ["remote", "remove", f"r{i}"], src, env)
            rows.append(row(f"push to {label}", mp_push, dvc_push))
            rows.append(row(f"pull into an empty clone from {label}", mp_pull, dvc_pull))

        print("## sharing results: push, pull and run --pull against dvc\n")
        print(
            f"Push and pull of the results up to `window` ({len(files)} files, {size / 1e6:.0f} MB), "
            f"{a.rounds} alternating rounds, seconds (min / median / max):\n"
        )
        print("| transfer | magpipe | dvc | dvc ÷ magpipe |")
        print("|---|---|---|---|")
        print("\n".join(rows))
        print(
            "\n`magpipe run --pull window` on an empty store against computing the same four "
            "stages (folder remote):\n"
        )
        print("| | run --pull | compute | compute ÷ pull |")
        print("|---|---|---|---|")
        print(row("up to window", run_pull, compute))
        if not a.no_full:
            full_pipeline(a, repo, work, env, mp)
        else:
            print("\nThe whole default pipeline pulled against a cold run: not measured in this run "
                  "(`REMOTE_BENCH=--no-full` skips its cold run, most of an hour); the guide's "
                  "Sharing results page quotes the last full measurement, with its date.")
    finally:
        if weed:
            weed.stop()
        shutil.rmtree(work, ignore_errors=True)


def project_clone(repo, d):
    """The project's tracked files (what a fresh `git clone` has), with the repository's venv,
    whose path enters no key."""
    os.makedirs(d)
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for n in filter(None, names):
        s = os.path.join(repo, n)
        if os.path.isfile(s):
            os.makedirs(os.path.join(d, os.path.dirname(n)), exist_ok=True)
            shutil.copy2(s, os.path.join(d, n))
    os.symlink(os.path.join(repo, ".venv"), os.path.join(d, ".venv"))


def full_pipeline(a, repo, work, env, mp):
    """The default pipeline, every target: one cold run (it takes most of an hour on two cores,
    so one round), pushed to a folder remote; then `run --pull` of every target on fresh clones."""
    cold = os.path.join(work, "full-cold")
    project_clone(repo, cold)
    t_cold = timed(lambda: sh(mp + ["run"], cold, env))
    # With everything computed: what checking that nothing changed costs.
    cached = [timed(lambda: sh(mp + ["run"], cold, env)) for _ in range(10)]
    remote = os.path.join(work, "full-remote")
    os.makedirs(remote)
    sh(mp + ["remote", "add", "team", remote, "--default"], cold, env)
    t_push = timed(lambda: sh(mp + ["push", "--all"], cold, env))
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(remote) for f in fs)
    table = open(sh(mp + ["artifact", "tables", "table2"], cold, env).strip(), "rb").read()
    pulls = []
    for i in range(a.rounds):
        c = os.path.join(work, f"full-pull-{i}")
        project_clone(repo, c)
        sh(mp + ["remote", "add", "team", remote, "--default"], c, env)
        pulls.append(timed(lambda: sh(mp + ["run", "--pull"], c, env)))
        got = open(sh(mp + ["artifact", "tables", "table2"], c, env).strip(), "rb").read()
        if got != table:
            sys.exit("the pulled Table 2 differs from the computed one")
        shutil.rmtree(c)
    print(
        f"\nThe whole default pipeline on a fresh clone, every target: `magpipe run --pull` from a "
        f"folder remote holding it ({size / 1e6:.0f} MB, pushed in {t_push:.1f} s), "
        f"{a.rounds} rounds, against one cold `magpipe run` (what `make run` computes on a "
        "fresh machine); Table 2 byte-identical in every round:\n"
    )
    print("| | run --pull | cold run | cold ÷ pull |")
    print("|---|---|---|---|")
    print(f"| default pipeline | {fmt(pulls)} | {t_cold:.0f} | "
          f"{t_cold / statistics.median(pulls):.0f}× |")
    print(f"\nall-cached `magpipe run` of the default pipeline (ridge included), 10 runs: "
          f"{min(cached):.3f} / {statistics.median(cached):.3f} / {max(cached):.3f} s")


if __name__ == "__main__":
    main()
