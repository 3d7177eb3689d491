#!/usr/bin/env bash
# Regenerate the cpu-tier specialization-and-transfer records (issue 8), one job after another (the source
# runs measure latency: nothing else should run meanwhile). Every step is resumable or cached: trained models
# live in $CCBENCH_CACHE/runs, so a rerun only measures; a record that exists is not written twice.
# Usage: CCBENCH_DATA=../shared/data bash scripts/cpu_shift_transfer.sh [job ...]   (default: all, in order)
#   pretrain-a          the imagenette-a backbone (5 classes; never sees imagenette-b), about an hour
#   source-<m>          ccbench run of method m on imagenette-a (the transfer source)
#   transfer-<m>        m's imagenette-a run -> imagenette-b under every protocol that applies
#   shift-image         Imagenette runs -> imagenette-c (5 corruptions x 5 severities)
#   shift-text          SST-2 runs -> imdb and amazon-books
#   amazon-pair         dense and early-exit trained on amazon-books -> amazon-kitchen (a cross-domain pair;
#                       256-token reviews: about 40 min of training per method on 2 cores)
set -euo pipefail
say() { echo "== $(date +%T) $*"; }
# the one record of method $1 on task $2 (the source runs let calibration pick one knob value)
record() { ls results/cpu/"$2"/"$1"/*.json | grep -v '/shift-' | head -1; }
# whether method $1 has a run record on task $2 (shift records of other runs live beside them: not runs)
has_run() { record "$1" "$2" > /dev/null 2>&1; }
# the record of method $1 on task $2 whose knob has value $3
record_at() { python - "$@" <<'PY'
import json, sys
from pathlib import Path
method, task, value = sys.argv[1:4]
for p in sorted(Path("results/cpu", task, method).glob("*.json")):
    r = json.loads(p.read_text())
    if r.get("kind", "run") == "run" and str(r["method"]["knob"]["value"]) == value:
        print(p); break
PY
}
SOURCES=(dense early-exit moe-topk avit)
protocols() { case $1 in dense|avit) echo "head-only full";; *) echo "head-only router-only modules-frozen full";; esac; }
# one record per (source record, target, protocol): skip what exists
# (read the JSON: a record's dense_reference also names a protocol, so grepping the text is not enough)
has_transfer() { python - "$@" <<'PY'
import json, sys
from pathlib import Path
source, method, protocol = sys.argv[1:4]
for p in Path("results/cpu/imagenette-b", method).glob("*.json"):
    r = json.loads(p.read_text())
    if r.get("kind") == "transfer" and r["source"]["record_id"].startswith(source) and r["protocol"] == protocol:
        sys.exit(0)
sys.exit(1)
PY
}
has_shift() { grep -l "\"record_id\": \"$1" results/cpu/"$2"/*/shift-*.json 2>/dev/null | grep -q . ; }

job() {
  case $1 in
    pretrain-a) say "pretrain imagenette-a"; ccbench pretrain --task imagenette-a --budget cpu --quiet ;;
    source-*) m=${1#source-}; say "run $m on imagenette-a"
              has_run "$m" imagenette-a && { echo "exists"; return; }
              ccbench run --method "$m" --task imagenette-a --budget cpu --quiet --resume ;;
    transfer-*) m=${1#transfer-}; src=$(record "$m" imagenette-a); id=$(basename "$src" .json)
              for p in $(protocols "$m"); do
                say "transfer $m ($id) -> imagenette-b $p"
                has_transfer "$id" "$m" "$p" && { echo "exists"; continue; }
                ccbench transfer "$src" --to imagenette-b --protocol "$p" --quiet
              done ;;
    shift-image) for spec in dense: avit:0.1 early-exit:0.5 moe-topk:1; do
                m=${spec%%:*}; v=${spec#*:}; src=$( [[ -z $v ]] && record "$m" imagenette || record_at "$m" imagenette "$v")
                say "shift $m ($src) -> imagenette-c"; has_shift "$(basename "$src" .json)" imagenette-c && { echo "exists"; continue; }
                ccbench shift "$src" --to imagenette-c --quiet
              done ;;
    shift-text) for spec in dense: early-exit:0.8 moefication:4 evit:0.7; do
                m=${spec%%:*}; v=${spec#*:}; src=$( [[ -z $v ]] && record "$m" sst2 || record_at "$m" sst2 "$v")
                for t in imdb amazon-books; do
                  say "shift $m ($src) -> $t"; has_shift "$(basename "$src" .json)" "$t" && { echo "exists"; continue; }
                  ccbench shift "$src" --to "$t" --quiet
                done
              done ;;
    amazon-pair) for m in dense early-exit; do
                say "run $m on amazon-books"
                has_run "$m" amazon-books && echo "exists" \
                  || ccbench run --method "$m" --task amazon-books --budget cpu --quiet --resume
                src=$(record "$m" amazon-books)
                say "shift $m ($src) -> amazon-kitchen"; has_shift "$(basename "$src" .json)" amazon-kitchen && { echo "exists"; continue; }
                ccbench shift "$src" --to amazon-kitchen --quiet
              done ;;
    *) echo "unknown job $1" >&2; exit 2 ;;
  esac
}
ORDER=(shift-image shift-text amazon-pair pretrain-a)
for m in "${SOURCES[@]}"; do ORDER+=("source-$m"); done
for m in "${SOURCES[@]}"; do ORDER+=("transfer-$m"); done
for j in "${@:-${ORDER[@]}}"; do job "$j"; done
ccbench leaderboard
