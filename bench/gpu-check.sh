#!/usr/bin/env bash
# The checks a GPU machine must pass (`make gpu-check`, which builds with MAGPIPE_CUDA=1 first):
#   1. the worker is linked to libtorch_cuda and every library it needs resolves;
#   2. `magpipe-worker info` shows a CUDA device, the driver's CUDA version and cuDNN;
#   3. one epoch of the Table 1 best MagFluxLSTM (dropout 0, so no device RNG is drawn) on cuda
#      gives the CPU's training loss and validation metric to 1e-3 relative;
#   4. training throughput on cuda against cpu (bench-train, same model and batch).
# Prints one line per check and exits non-zero at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
W=target/release/magpipe-worker
M=target/release/magpipe
fail() { echo "FAIL: $*" >&2; exit 1; }

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

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp pipeline.yaml "$work/"
q=("$M" -q -f "$work/pipeline.yaml")
"${q[@]}" run window >/dev/null
sets=(--set lstm_hybrid.epochs=1 --set lstm_hybrid.early_stop=none --set lstm_hybrid.dropout=0)
for dev in cpu cuda; do
  "${q[@]}" "${sets[@]}" --set lstm_hybrid.device=$dev run lstm_hybrid >/dev/null
  cp "$("${q[@]}" "${sets[@]}" --set lstm_hybrid.device=$dev artifact lstm_hybrid config)" "$work/$dev.json"
  cp "$("${q[@]}" "${sets[@]}" --set lstm_hybrid.device=$dev artifact lstm_hybrid history_md)" "$work/$dev.md"
done
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
