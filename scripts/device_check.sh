#!/usr/bin/env bash
# One device check, for a fresh GPU machine that has only this repository, a wheel directory (.whl, built by
# shared/device/make-wheels.sh) and the CIFAR-10 archive (shared/data/cifar10-jpeg.tar.gz) carried along.
# Budget: <= 8 min wall. Writes OUT/device_check.json (rewritten after every part, so a part that times out or
# fails still leaves the others' results) and prints a table. Every part runs under its own `timeout`:
#
#   install   the wheels the machine lacks, --no-deps into a --target folder put first on PYTHONPATH: the
#             preinstalled torch is never touched (its version and path are checked before and after)
#   bench     the P-DARTS protocol, mixed and path, precision auto (the fast path), few steps
#   against   bench --against nni at the same shapes (8 cells, C=16, batch 64): NNI's DARTS / RandomOneShot vs ours
#   nb201     the nb201 preset for 3 seeds at once (one process each); `lookup` against --table if given
#
# Usage: scripts/device_check.sh [--device cuda|cpu] [--tiny] [--no-install] [--wheels DIR] [--out DIR]
#                                [--dataset SPEC] [--table CSV[:COLUMN]]
# --tiny: toy shapes on the embedded digits (the test suite runs `--device cpu --tiny --no-install`, < 1 min).
# Env: PYTHON (default python3).
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
DEVICE=cuda; TINY=0; INSTALL=1; WHEELS="$REPO/.whl"; OUT="$REPO/runs/device-check"; DATASET=""; TABLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --dataset) DATASET=$2; shift 2 ;;
    --table) TABLE=$2; shift 2 ;;
    -h|--help) sed -n 2,17p "$0"; exit 0 ;;
    *) echo "device_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cpu|cuda|cuda:*) ;; *) echo "device_check.sh: --device must be cpu or cuda[:N], got $DEVICE" >&2; exit 2 ;; esac
mkdir -p "$OUT" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
CLI=("$PY" -m nni_offpolicy.cli)
START=$(date +%s)
PARTS="$OUT/parts.jsonl"; : > "$PARTS"

# part NAME STATUS RC SECONDS [EXTRA_JSON]: one line per part; then the summary JSON and table are rewritten
part() {
  printf '{"part": "%s", "status": "%s", "rc": %s, "seconds": %s%s}\n' "$1" "$2" "$3" "$4" "${5:+, $5}" >> "$PARTS"
  summarise > /dev/null
}
summarise() {
  "$PY" - "$OUT" "$DEVICE" "$TINY" "$(( $(date +%s) - START ))" <<'EOF'
import json, sys
from pathlib import Path
out, device, tiny, wall = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
parts = {}
for line in (out / "parts.jsonl").read_text().splitlines():
    p = json.loads(line); parts[p.pop("part")] = p
def load(name):
    try: return json.loads((out / name).read_text())
    except (OSError, ValueError): return None
benches = [d for d in (load("bench_mixed.json"), load("bench_path.json")) if d]
results = {"bench": {"runs": [r for d in benches for r in d["runs"]], "docs": benches} if benches else None, "against_nni": load("bench_nni.json"), "lookup": load("lookup.json")}
doc = {"device": device, "tiny": tiny, "wall_s": wall, "parts": parts, "results": results}
(out / "device_check.json.tmp").write_text(json.dumps(doc, indent=2) + "\n")
(out / "device_check.json.tmp").replace(out / "device_check.json")
lines = [f"device check on {device}{' (tiny)' if tiny else ''}: {wall} s wall", "",
         f"{'part':<12} {'status':<10} {'rc':>4} {'s':>6}", "-" * 35]
lines += [f"{k:<12} {v['status']:<10} {v['rc']:>4} {v['seconds']:>6}" for k, v in parts.items()]
b = results["bench"]
if b:
    lines += ["", "bench (P-DARTS protocol, extrapolated):"]
    lines += [f"  {r['weight_mode']} {r['precision']}: full protocol {r['full_protocol_s'] / 60:.1f} min, stage-1 "
              + (f"peak {r['stages'][0]['peak_memory_gb']:.2f} GB" if r['stages'][0]['peak_memory_gb'] is not None
               else "(no GPU peak on a CPU)") for r in b["runs"]]
a = results["against_nni"]
if a:
    lines += ["", f"against NNI ({a['shape']['cells']} cells, C={a['shape']['channels']}, batch "
              f"{a['shape']['batch_size']}):"]
    lines += [f"  {n:<11} {s['s_per_step']:.4f} s/step {s['images_per_s']:8.1f} img/s {s['peak_memory_gb']:6.2f} GB"
              for n, s in a["sides"].items()]
    lines += [f"  {p['ours']} vs {p['nni']}: {p['speedup']:.2f}x" for p in a["pairs"]]
n = parts.get("nb201")
if n:
    lines += ["", "nb201 seeds: " + ", ".join(f"seed {s['seed']} rc {s['rc']}" for s in n.get("seeds", []))]
l = results["lookup"]
if l:
    lines += ["lookup: see lookup.json / lookup.txt"]
print("\n".join(lines))
EOF
}
now() { date +%s; }
# a part's timeout: its own, or what is left of the whole check's budget (BUDGET_S, default 440 s: lookup and the summary fit in the 8 min)
cap() { local left=$(( ${BUDGET_S:-440} - ($(now) - START) )); [ "$1" -lt "$left" ] && echo "$1" || echo "$left"; }
status_of() { case "$1" in 0) echo ok ;; 124|137) echo timeout ;; *) echo failed ;; esac; }

# ---------------------------------------------------------------------------------------------- install
t0=$(now)
if [ "$INSTALL" = 1 ]; then
  before=$("$PY" -c 'import torch; print(torch.__version__, torch.__file__)' 2>/dev/null)
  if ls "$WHEELS"/*.whl > /dev/null 2>&1; then
    timeout 45 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$WHEELS"/*.whl > "$OUT/install.log" 2>&1
    rc=$?
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
  else
    echo "no wheels in $WHEELS" > "$OUT/install.log"; rc=0
  fi
  after=$("$PY" -c 'import torch; print(torch.__version__, torch.__file__)' 2>/dev/null)
  same=false; [ -n "$before" ] && [ "$before" = "$after" ] && same=true
  status=ok; [ $rc -ne 0 ] && status=failed; [ "$same" = false ] && status=torch-changed
  part install "$status" "$rc" $(( $(now) - t0 )) "\"torch_before\": \"$before\", \"torch_after\": \"$after\""
else
  part install skipped 0 0
fi

# ---------------------------------------------------------------------------------------------- sizes
if [ "$TINY" = 1 ]; then
  DS=${DATASET:-digits}
  BENCH=(--dataset "$DS" --layers 3,3,3 --batch-size 16 --steps 1 --set channels=4 --set rl_interval_steps=1
         --set samples_per_update=2 --set eval_layers=5 --set eval_channels=8 --set threads=1 --set eval_images=64)
  AGAINST=(--dataset "$DS" --layers 3 --batch-size 8 --steps 2 --set channels=4 --set threads=1 --rounds 1
           --sides nni-darts,ours-darts)
  NB201=(--set dataset="$DS" --set layers=1,1,1 --set channels=4 --set epochs=1 --set warmup_epochs=0
         --set batch_size=16 --set max_steps_per_epoch=1 --set rl_interval_steps=1 --set samples_per_update=2
         --set eval_images=64 --set threads=1 --set eval_layers=1 --set eval_channels=4)
  T_BENCH=150; T_AGAINST=150; T_NB201=150  # generous: a shared, loaded CPU runs these several times slower
else
  DSET=(); [ -n "$DATASET" ] && DSET=(--dataset "$DATASET")
  # P-DARTS shapes (5/11/17 cells, batch 96); 10 measured steps per epoch, the fast path only, monitoring
  # evaluations on 2048 images (an estimate, not measured here: no GPU was lent when this was written)
  BENCH=("${DSET[@]}" --steps 10 --precisions auto --set rl_interval_steps=5 --set eval_images=2048)
  AGAINST=("${DSET[@]}" --layers 8 --batch-size 64 --steps 6 --rounds 2)
  NB201=(--set max_steps_per_epoch=25 --set eval_images=2048 ${DATASET:+--set dataset=$DATASET})
  T_BENCH=95; T_AGAINST=140; T_NB201=90
fi

# ---------------------------------------------------------------------------------------------- bench
# one process per weight mode, so a timeout in one still leaves the other's figures
for mode in mixed path; do
  t0=$(now); t=$(cap "$T_BENCH")
  if [ "$t" -lt 10 ]; then part "bench_$mode" skipped 0 0; continue; fi
  timeout "$t" "${CLI[@]}" bench --device "$DEVICE" --weight-modes $mode "${BENCH[@]}" --fresh -o "$OUT/bench" \
    --json "$OUT/bench_$mode.json" > "$OUT/bench_$mode.txt" 2> "$OUT/bench_$mode.log"
  rc=$?; part "bench_$mode" "$(status_of $rc)" "$rc" $(( $(now) - t0 ))
  cat "$OUT/bench_$mode.txt"
done

# ---------------------------------------------------------------------------------------------- against nni
t0=$(now); t=$(cap "$T_AGAINST")
timeout "$t" "${CLI[@]}" bench --against nni --device "$DEVICE" "${AGAINST[@]}" -o "$OUT/against-nni" \
  --json "$OUT/bench_nni.json" > "$OUT/bench_nni.txt" 2> "$OUT/bench_nni.log"
rc=$?; part against_nni "$(status_of $rc)" "$rc" $(( $(now) - t0 ))
cat "$OUT/bench_nni.txt"

# ---------------------------------------------------------------------------------------------- nb201 x 3 seeds
t0=$(now); pids=(); t=$(cap "$T_NB201")
for seed in 0 1 2; do
  timeout "$t" "${CLI[@]}" search --preset nb201 --set device="$DEVICE" --set seed=$seed "${NB201[@]}" \
    --quiet --overwrite -o "$OUT/nb201-seed$seed" > "$OUT/nb201-seed$seed.log" 2>&1 &
  pids+=($!)
done
seeds=""; worst=0
for k in 0 1 2; do
  wait "${pids[$k]}"; rc=$?
  seeds="$seeds${seeds:+, }{\"seed\": $k, \"rc\": $rc}"; [ $rc -ne 0 ] && worst=$rc
done
status=$(status_of $worst)
if [ -n "$TABLE" ]; then
  done_dirs=(); for k in 0 1 2; do [ -f "$OUT/nb201-seed$k/genotype.json" ] && done_dirs+=("$OUT/nb201-seed$k"); done
  if [ ${#done_dirs[@]} -gt 0 ]; then
    timeout 20 "${CLI[@]}" lookup "${done_dirs[@]}" --table "$TABLE" --json > "$OUT/lookup.json" 2>> "$OUT/lookup.log"
    timeout 20 "${CLI[@]}" lookup "${done_dirs[@]}" --table "$TABLE" > "$OUT/lookup.txt" 2>> "$OUT/lookup.log"
    cat "$OUT/lookup.txt"
  fi
fi
part nb201 "$status" "$worst" $(( $(now) - t0 )) "\"seeds\": [$seeds]"

echo
echo "=== device check ==="
summarise
echo "wrote $OUT/device_check.json"
