#!/usr/bin/env bash
# Regenerate the cpu-tier GLUE records (issue 7), one job after another (latency is measured: nothing
# else should run meanwhile). Fine-tuned models are cached, so a rerun only measures; an interrupted
# training continues with `--resume`. moefication starts from dense's fine-tuned model (run dense first);
# patience evaluates early-exit's.
# Usage: CCBENCH_DATA=../shared/data bash scripts/cpu_glue.sh [job ...]   (default: all, in order)
set -euo pipefail
run() { echo "== $(date +%T) ccbench run $*"; ccbench run --budget cpu --quiet --resume "$@"; }
declare -A JOBS=(
  [dense-sst2]="--task sst2 --method dense"
  [dense-mrpc]="--task mrpc --method dense"
  [dense-cola]="--task cola --method dense"
  [dense-rte]="--task rte --method dense"
  [dense-stsb]="--task stsb --method dense"
  [early-exit-sst2]="--task sst2 --method early-exit --knob threshold=0.6,0.7,0.8,0.9,0.95,0.99"
  [early-exit-mrpc]="--task mrpc --method early-exit --knob threshold=0.6,0.7,0.8,0.9,0.95,0.99"
  [patience-sst2]="--task sst2 --method patience --knob patience=1,2,3"
  [patience-mrpc]="--task mrpc --method patience --knob patience=1,2,3"
  [moefication-sst2]="--task sst2 --method moefication --knob k=2,4,8"
  [moefication-mrpc]="--task mrpc --method moefication --knob k=2,4,8"
  [evit-sst2]="--task sst2 --method evit --knob keep_rate=0.5,0.6,0.7,0.8"
  [evit-mrpc]="--task mrpc --method evit --knob keep_rate=0.5,0.6,0.7,0.8"
)
ORDER=(dense-sst2 early-exit-sst2 moefication-sst2 evit-sst2 dense-mrpc early-exit-mrpc moefication-mrpc evit-mrpc
       dense-cola dense-rte dense-stsb patience-sst2 patience-mrpc)
for job in "${@:-${ORDER[@]}}"; do
  [[ -n "${JOBS[$job]:-}" ]] || { echo "unknown job $job (known: ${ORDER[*]})" >&2; exit 2; }
  # shellcheck disable=SC2086
  run ${JOBS[$job]}
done
ccbench leaderboard
