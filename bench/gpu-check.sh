#!/usr/bin/env bash
# The checks a GPU machine must pass (`make gpu-check`, which builds with MAGPIPE_CUDA=1 first):
#   1. the worker is linked to libtorch_cuda and every library it needs resolves;
#   2. `magpipe-worker info` shows a CUDA device, the driver's CUDA version and cuDNN;
#   3. one epoch of the Table 1 best MagFluxLSTM (dropout 0, so no device RNG is drawn) on cuda
#      gives the CPU's training loss and validation metric to 1e-3 relative;
#   4. training throughput on cuda against cpu (bench-train, same model and batch).
# Prints one line per check and exits non-zero at the first failure.
#
# GPU_CHECK=cpu-only runs what needs no device (check 3's CPU half on a 5 % subsample, check 4's
# CPU half) and stops before the first check that does: the suite runs it that way
# (tests/gpu_check.rs), so the script cannot rot unseen on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${MAGPIPE_WORKER:-target/release/magpipe-worker}
M=${MAGPIPE_BIN:-target/release/magpipe}
fail() { echo "FAIL: $*" >&2; exit 1; }
cpu_only=$([ "${GPU_CHECK:-}" = cpu-only ] && echo 1 || echo 0)

if [ "$cpu_only" = 0 ]; then
ldd "$W" | grep -q 'libtorch_cuda.so' || fail "$W is not linked to libtorch_cuda (build with MAGPIPE_CUDA=1 make build)"
if ldd "$W" | grep -q 'not found'; then ldd "$W" | grep 'not found' >&2; fail "libraries missing"; fi
echo "ok 1: $W links libtorch_cuda; every library resolves"

info=$("$W" info)
echo "$info" | python3 -c '
import json, sys
i = json.load(sys.stdin); c = i["cuda"]
if not c["compiled"]: sys.exit("FAIL: info says CUDA is not compiled in")
if not c["driver"]: sys.exit("FAIL: no NVIDIA driver (libcuda.so.1)")
if not c["devices"]: sys.exit("FAIL: the driver reports no device")
if not c["cudnn_available"]: sys.exit("FAIL: cuDNN is not available")
print(f"ok 2: {len(c[\"devices\"])} device(s): {\", \".join(c[\"devices\"])}; driver CUDA {c[\"driver_cuda_version\"]}, "
      f"runtime {c[\"runtime_version\"]}, cuDNN {c[\"cudnn_version\"]}; CPU {i[\"cpu\"][\"model\"]} ({i[\"cpu\"][\"onednn_isa\"]})")
'
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp pipeline.yaml "$work/"
q=("$M" -q -f "$work/pipeline.yaml")
"${q[@]}" run window >/dev/null
# --set belongs to the subcommand: `magpipe run STAGE --set …`.
sets=(--set lstm_hybrid.epochs=1 --set lstm_hybrid.early_stop=none --set lstm_hybrid.dropout=0)
devices=(cpu cuda)
if [ "$cpu_only" = 1 ]; then
  sets+=(--set lstm_hybrid.subsample=0.05)
  devices=(cpu)
fi
for dev in "${devices[@]}"; do
  "${q[@]}" run lstm_hybrid "${sets[@]}" --set lstm_hybrid.device=$dev >/dev/null
  cp "$("${q[@]}" artifact lstm_hybrid config "${sets[@]}" --set lstm_hybrid.device=$dev)" "$work/$dev.json"
  cp "$("${q[@]}" artifact lstm_hybrid history_md "${sets[@]}" --set lstm_hybrid.device=$dev)" "$work/$dev.md"
done
if [ "$cpu_only" = 1 ]; then
  python3 -c "
import json, sys
c = json.load(open('$work/cpu.json'))
if c['device'].lower() != 'cpu': sys.exit('FAIL: the cpu run says device ' + c['device'])
row = [x.strip() for x in open('$work/cpu.md').read().splitlines()[2].split('|')[1:-1]]
print(f'ok 3 (cpu half): one epoch on 5 % of the windows: train loss {float(row[1]):.6e}, val derivative RMSE {c[\"val_rmse\"]:.6e}')
"
  c=$("$W" bench-train 1 3 fp32 cpu lstm)
  python3 -c "print(f'ok 4 (cpu half): lstm bench-train windows/s: cpu $c')"
  echo "stopped before the first check that needs a device (GPU_CHECK=cpu-only)"
  exit 0
fi
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
cpu, cuda = (json.load(open(f"{w}/{d}.json")) for d in ("cpu", "cuda"))
if cuda["device"] == cpu["device"]:
    sys.exit(f"FAIL: both runs say device {cpu['device']}")
rel = abs(cuda["val_rmse"] - cpu["val_rmse"]) / abs(cpu["val_rmse"])
row = lambda d: [c.strip() for c in open(f"{w}/{d}.md").read().splitlines()[2].split("|")[1:-1]]
lc, lg = float(row("cpu")[1]), float(row("cuda")[1])
rl = abs(lg - lc) / abs(lc)
msg = (f"one epoch: train loss cpu {lc:.6e} cuda {lg:.6e} (rel {rl:.1e}); val derivative RMSE "
       f"cpu {cpu['val_rmse']:.6e} cuda {cuda['val_rmse']:.6e} (rel {rel:.1e}); "
       f"windows/s cpu {row('cpu')[6]} cuda {row('cuda')[6]}")
if rl > 1e-3 or rel > 1e-3:
    sys.exit("FAIL: " + msg)
print("ok 3: " + msg)
PY

for m in lstm encdec; do
  c=$("$W" bench-train 2 30 fp32 cpu $m)
  g=$("$W" bench-train 2 200 fp32 cuda $m)
  python3 -c "print(f'ok 4: $m bench-train windows/s: cpu (2 threads) $c, cuda $g, ratio {$g / $c:.1f}x')"
done
