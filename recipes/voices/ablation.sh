#!/usr/bin/env bash
# The front-end ablation: what the content path reads (mel/mel, whisper/mel) and any other rows of
# config overrides, each trained with the same budget, judged on the held-out voices, and tabled.
#
#   CONF=recipes/voices/conf/whisper_mel.yaml ./recipes/voices/run.sh --stop-stage 2   # corpus, manifests,
#                                       # features with the Whisper states every row needs
#   ./recipes/voices/ablation.sh                                  # the two rows, then the table
#   ROWS="whisper_mel_lr:whisper_mel:train.lr=0.001" ./recipes/voices/ablation.sh
#
# Every row: `vconv train` STEPS steps (default 3000) in fp32 (BF16=true: bf16 autocast; resumes when killed), the shipped neural
# vocoder attached (VOCODER, default pretrained/vconv-voices-small), `vconv evaluate` on the test split
# (EVAL_SOURCES sources per pair, seed 0), then `local/ablation_table.py` over all rows. Outputs go to
# EXP/ablation/<name>/{train,eval}; rows that are done are skipped. The report has the model's own output
# (matching off) and the matched conversion as two rows, from one conversion each. Environment: EXP (as run.sh), STEPS,
# ROWS (space-separated name:config[:override,...]; config is a file in conf/ without .yaml), FRONTENDS,
# THREADS (torch threads, default 2), VOCODER, EVAL_SOURCES, TARGET_MATCH (default meanstd, as `vconv convert`;
# off gives the own-output row alone), PYTHON / VCONV.
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$RECIPE_DIR/../.." && pwd)
EXP=${EXP:-$RECIPE_DIR/exp/voices}
STEPS=${STEPS:-3000}
BF16=${BF16:-false}
ROWS=${ROWS:-"mel_mel:small whisper_mel:whisper_mel"}
FRONTENDS=${FRONTENDS:-$EXP/frontends}
THREADS=${THREADS:-2}
VOCODER=${VOCODER:-$REPO/pretrained/vconv-voices-small}
EVAL_SOURCES=${EVAL_SOURCES:-5}
TARGET_MATCH=${TARGET_MATCH:-meanstd}
# the repository's .venv (the README's set-up) when there is one, so the recipe runs without activating it
PYTHON=${PYTHON:-$(if [[ -x "$RECIPE_DIR/../../.venv/bin/python" ]]; then echo "$RECIPE_DIR/../../.venv/bin/python"; else echo python3; fi)}
VCONV=${VCONV:-$PYTHON -m vconv}
log() { echo "[$(date +%H:%M:%S)] $*"; }
[[ -f $EXP/data/train.jsonl && -d $EXP/features ]] || { echo "ablation.sh: no $EXP/data or $EXP/features; run run.sh --stop-stage 2 first" >&2; exit 1; }

table=()
for row in $ROWS; do
  IFS=: read -r name conf overrides <<< "$row"
  out=$EXP/ablation/$name
  extra=()
  [[ -n ${overrides:-} ]] && IFS=, read -r -a extra <<< "$overrides"
  if [[ ! -f $out/train/model/config.json ]]; then
    log "$name: train $STEPS steps with conf/$conf.yaml ${extra[*]+${extra[*]}}"
    resume=(); [[ -f $out/train/checkpoints/latest.pt ]] && resume=(--resume)
    $VCONV train -c "$RECIPE_DIR/conf/$conf.yaml" "train.train_manifest=$EXP/data/train.jsonl" \
      "train.valid_manifest=$EXP/data/valid.jsonl" "train.features_dir=$EXP/features" "train.frontends_dir=$FRONTENDS" \
      "train.run_dir=$out/train" "train.steps=$STEPS" "train.bf16=$BF16" "train.threads=$THREADS" \
      ${extra[@]+"${extra[@]}"} --no-progress ${resume[@]+"${resume[@]}"}
  fi
  [[ -f $out/train/model/vocoder.json ]] || $VCONV bundle attach-vocoder "$out/train/model" "$VOCODER"
  if [[ ! -f $out/eval/results.json ]]; then
    log "$name: evaluate on the held-out voices"
    rm -rf "$out/eval"
    $VCONV evaluate --model "$out/train/model" --manifest "$EXP/data/test.jsonl" -o "$out/eval" \
      --sources-per-pair "$EVAL_SOURCES" --seed 0 --no-progress --target-match "$TARGET_MATCH"
  fi
  table+=("$name=$out/train:$out/eval")
done
$PYTHON "$RECIPE_DIR/local/ablation_table.py" "${table[@]}" | tee "$EXP/ablation/table.md"
