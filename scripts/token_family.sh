#!/usr/bin/env bash
# Regenerate the token-family records of the cpu tier on Imagenette (issue 4), one job after another
# (jobs must not overlap: latency is measured). Trained models are cached, so a rerun only measures.
# Usage: CCBENCH_DATA=../shared/data bash scripts/token_family.sh [method ...]   (default: all)
set -euo pipefail
run() { echo "== ccbench run $*"; ccbench run --task imagenette --budget cpu --quiet "$@"; }
declare -A JOBS=(
  [dense]="--method dense"
  [tome]="--method tome --knob r=1,2,3,4,5"
  [dynamicvit]="--method dynamicvit --knob keep_ratio=0.5,0.6,0.7,0.8"
  [evit]="--method evit --knob keep_rate=0.5,0.6,0.7,0.8"
  [random-drop]="--method random-drop --knob keep_ratio=0.5,0.6,0.7,0.8"
  [static-res]="--method static-res --knob resolution=112,96,80"
  [avit]="--method avit --knob threshold=0.05,0.1,0.3,0.5"
)
ORDER=(dense tome dynamicvit evit random-drop static-res avit)
for m in "${@:-${ORDER[@]}}"; do
  [[ -n "${JOBS[$m]:-}" ]] || { echo "unknown job $m (known: ${ORDER[*]})" >&2; exit 2; }
  # shellcheck disable=SC2086
  run ${JOBS[$m]}
done
