#!/usr/bin/env bash
# One prepared GPU session (issue 15 section 3), sized for a 10-minute call:
#   1. versions and the card (nvidia-smi);
#   2. python -m experiments.bench_throughput: the reference shape, the device's fp32 matmul peak,
#      a same-run PyTorch (cuda) reference, populations of 8 and 64 at the proxy shape;
#   3. python -m experiments.race --seed 42 --preset full --executor population, with the wall-clock
#      budget that is left (the call's seconds minus what 1-2 took minus a 40 s margin), so the
#      race stops cleanly and its ledger, leaderboard and summary come back.
# Usage (repo root): OUT=dir bash experiments/gpu_run.sh [call_seconds] [workers]
# Results: $OUT/env.txt, $OUT/bench.json, $OUT/race.log, $OUT/race_run.tgz (the run directory without
# checkpoints; their sizes are listed in race.log).
set -u
OUT=${OUT:-runs/gpu}
CALL_S=${1:-600}
WORKERS=${2:-16}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
T0=$(date +%s)
PY=${PYTHON:-python3}
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  $PY - <<'EOF'
import sys, jax, flax, optax, chex, numpy, scipy
print("python", sys.version.split()[0], "jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "chex", chex.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)
print("devices", jax.devices(), "backend", jax.default_backend())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except ImportError as e:
    print("torch missing:", e)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# the bench shares the card with nothing; JAX may take half the memory, torch the rest
XLA_PYTHON_CLIENT_MEM_FRACTION=0.5 timeout 170 $PY -m experiments.bench_throughput --chunks 3 \
  > "$OUT/bench.json" 2> "$OUT/bench.err"
echo "bench rc $? after $(( $(date +%s) - T0 )) s"; cat "$OUT/bench.json"; tail -5 "$OUT/bench.err"

LEFT=$(( CALL_S - ($(date +%s) - T0) - 40 ))
if [ "$LEFT" -lt 60 ]; then LEFT=60; fi
echo "race budget ${LEFT}s, ${WORKERS} workers"
RUN=/tmp/igla-gpu-race
rm -rf "$RUN"
timeout $(( LEFT + 45 )) $PY -m experiments.race --seed 42 --preset full --executor population \
  --workers "$WORKERS" --no-estimate --budget "${LEFT}s" --out "$RUN" 2>&1 | tee "$OUT/race.log"
echo "race rc ${PIPESTATUS[0]} after $(( $(date +%s) - T0 )) s" | tee -a "$OUT/race.log"
du -sh "$RUN"/ckpt 2>/dev/null | tee -a "$OUT/race.log"
ls "$RUN"/ckpt 2>/dev/null | wc -l | sed 's/^/checkpoints: /' | tee -a "$OUT/race.log"
tar czf "$OUT/race_run.tgz" -C "$(dirname "$RUN")" --exclude=ckpt "$(basename "$RUN")"
echo "done after $(( $(date +%s) - T0 )) s"
