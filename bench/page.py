"""Writes docs/src/measurements.md from one `make bench` run: when, on what machine, with what
versions, and everything the benchmarks printed, so that no number in the book is older than the
benchmark that produced it.

    python bench/page.py --out docs/src/measurements.md --worker target/release/magpipe-worker \
        --magpipe target/release/magpipe --args "..." OUTPUT...
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib():
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        return f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def out(cmd):
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--magpipe", required=True)
    ap.add_argument("--args", default="")
    ap.add_argument("outputs", nargs="+")
    a = ap.parse_args()
    info = {}
    try:
        info = json.loads(out([a.worker, "info"]) or "{}")
    except ValueError:
        pass
    cpu = info.get("cpu", {})
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = " (with uncommitted changes)" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
    torch_ref = out([sys.executable, "-c", "import torch; print(torch.__version__)"])
    dvc_ref = out([sys.executable, "-c", "import importlib.metadata as m; print(m.version('dvc'))"])
    invocation = f'make bench BENCH_ARGS="{a.args}"' if a.args else "make bench"
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Measurements",
        "",
        "<!-- Written by `make bench` (bench/page.py) from its own run; do not edit by hand: rerun "
        "`make bench` instead. -->",
        "",
        "Everything below was printed by one `make bench` run. Each magpipe number was measured side "
        "by side with its reference in the same run; where rounds alternate, min / median / max are "
        "over the rounds, as these machines are noisy. What the benchmarks measure and why: "
        "[Performance](guide/performance.md).",
        "",
        "| | |",
        "|---|---|",
        f"| run | {now}, `{invocation}` |",
        f"| machine | {cpu.get('model') or cpu_model()}, {os.cpu_count()} cores, {mem_gib()} |",
        f"| CPU kernels | oneDNN ISA `{cpu.get('onednn_isa', '?')}`, ATen `{cpu.get('aten_capability', '?')}`, "
        f"bf16 {'yes' if cpu.get('bf16') else 'no'} |",
        f"| magpipe | {out([a.magpipe, '--version'])}, commit {commit}{dirty}, libtorch "
        f"{info.get('libtorch_version', '?')}, CUDA compiled in: {'yes' if info.get('cuda', {}).get('compiled') else 'no'} |",
        f"| own engine | magpipe-kernels {info.get('kernels', {}).get('version', '?')}, numerics "
        f"{info.get('kernels', {}).get('numerics', '?')}, code path {info.get('kernels', {}).get('path', '?')} |",
        f"| references | PyTorch {torch_ref or '?'}, DVC {dvc_ref or '?'}, Python {platform.python_version()} |",
        "",
    ]
    for path in a.outputs:
        with open(path) as f:
            for line in f.read().rstrip("\n").split("\n"):
                lines.append(re.sub(r"^# ", "## ", line))
        lines.append("")
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines).rstrip("\n") + "\n")
    os.replace(tmp, a.out)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
