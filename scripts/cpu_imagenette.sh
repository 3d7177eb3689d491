#!/usr/bin/env bash
# Regenerate the cpu-tier Imagenette records, one job after another (jobs must not overlap, and nothing
# else should run meanwhile: latency is measured). Trained models are cached, so a rerun only measures;
# an interrupted training continues with `--resume`.
# Usage: CCBENCH_DATA=../shared/data bash scripts/cpu_imagenette.sh [job ...]   (default: all, in order)
set -euo pipefail
run() { echo "== $(date +%T) ccbench run $*"; ccbench run --task imagenette --budget cpu --quiet --resume "$@"; }
declare -A JOBS=(
  [dense]="--method dense"
  [avit]="--method avit --knob threshold=0.05,0.1,0.3,0.5"
  [avit-masked]="--method avit-masked --knob threshold=0.1,0.3"
  [tome]="--method tome --knob r=1,2,3,4,5"
  [dynamicvit]="--method dynamicvit --knob keep_ratio=0.5,0.6,0.7,0.8"
  [evit]="--method evit --knob keep_rate=0.5,0.6,0.7,0.8"
  [random-drop]="--method random-drop --knob keep_ratio=0.5,0.6,0.7,0.8"
  [static-res]="--method static-res --knob resolution=112,96,80"
  [moe-topk]="--method moe-topk --knob k=1,2"
  [moefication]="--method moefication --knob k=2,4,8"
  [moe-expert-choice]="--method moe-expert-choice --knob capacity=0.5,1,2"
  [soft-moe]="--method soft-moe --knob slots=1,2"
  [early-exit]="--method early-exit --knob threshold=0.3,0.4,0.5,0.7,0.9,0.99"
  [patience]="--method patience --knob patience=1,2,3,4"
  [static-depth]="--method static-depth --knob blocks=4,6,8"
  [layer-skip]="--method layer-skip --knob target=0.5,0.67,0.83"
)
ORDER=(dense avit avit-masked tome dynamicvit evit random-drop static-res
       moe-topk moefication moe-expert-choice soft-moe early-exit patience static-depth layer-skip)
for job in "${@:-${ORDER[@]}}"; do
  [[ -n "${JOBS[$job]:-}" ]] || { echo "unknown job $job (known: ${ORDER[*]})" >&2; exit 2; }
  # shellcheck disable=SC2086
  run ${JOBS[$job]}
done
ccbench leaderboard
