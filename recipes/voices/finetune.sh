#!/usr/bin/env bash
# Fine-tuning rows from a trained bundle, each judged on the held-out voices: the ablation of a part grown onto the
# shipped model (the pitch path, content consistency) at one budget, every row from the same starting weights.
#
#   EXP=~/vconv-work/exp/voices ROWS="pitch:whisper_mel_pitch plain:whisper_mel" ./recipes/voices/finetune.sh
#   (killed, or the machine went away?  the same command resumes each row from its last checkpoint)
#
# Each row is name:config[:override,...] (config: a file in conf/ without .yaml; overrides comma-separated). The row
# trains STEPS bf16 steps from FROM (default the shipped bundle; `train.init_from`, which may grow a pitch path onto
# it) on TRAIN (default EXP/data/train48.jsonl, the shipped model's 41 training voices) with the shipped model's
# fine-tuning settings (lr 2e-4, warm-up 200, the output discriminator 0.1 / FM 0.2), attaches the shipped vocoder and
# is judged into EXP/finetune/<name>/eval (`vconv evaluate --sources-per-pair 5 --seed 0`). FROM itself is judged
# into EXP/finetune/from/eval after the rows, in the same way, for paired comparisons (benchmarks/compare_reports.py).
# Environment: EXP, ROWS, STEPS (default 2000), FROM, TRAIN, FRONTENDS (default EXP/frontends), THREADS (default 2),
# PYTHON / VCONV (default: the repository's .venv when it exists, else python3).
#
# The shipped bundle is the last of three rows, each from the bundle the row before made (recipes/voices/README.md,
# steps 3-5): the default row (pitch:whisper_mel_pitch) from v6, the bundle shipped before the pitch path (git archive
# 1e790ae^ pretrained/vconv-voices-small | tar -x -C v6); the same with train.critics.content_consistency.weight=0.1;
# then whisper_mel_pitch_rooms with it. The default FROM is already that result; tests/test_recipe_voices.py checks that
# the default row's config is the shipped bundle's.
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$RECIPE_DIR/../.." && pwd)
EXP=${EXP:-$RECIPE_DIR/exp/voices}
ROWS=${ROWS:-pitch:whisper_mel_pitch}
STEPS=${STEPS:-2000}
FROM=${FROM:-$REPO/pretrained/vconv-voices-small}
TRAIN=${TRAIN:-$EXP/data/train48.jsonl}
FRONTENDS=${FRONTENDS:-$EXP/frontends}
THREADS=${THREADS:-2}
# the repository's .venv (the README's set-up) when there is one, so the recipe runs without activating it
PYTHON=${PYTHON:-$(if [[ -x "$RECIPE_DIR/../../.venv/bin/python" ]]; then echo "$RECIPE_DIR/../../.venv/bin/python"; else echo python3; fi)}
VCONV=${VCONV:-$PYTHON -m vconv}
log() { echo "[$(date +%H:%M:%S)] $*"; }

if [[ ! -f $TRAIN ]]; then  # the shipped model's 41 voices: the corpus without Beneath a Steel Sky and FOTAQ's minor actors
  grep -v -E '"speaker": ?"(bass_|fotaq_m)' "$EXP/data/train.jsonl" > "$TRAIN"
fi
judge() {  # judge BUNDLE OUT
  [[ -f $2/results.json ]] && return 0
  $VCONV evaluate --model "$1" --manifest "$EXP/data/test.jsonl" -o "$2" --sources-per-pair 5 --seed 0 --no-progress --force
}
for row in $ROWS; do
  IFS=: read -r name conf overrides <<< "$row"
  run=$EXP/finetune/$name
  extra=()
  [[ -n ${overrides:-} ]] && IFS=, read -r -a extra <<< "$overrides"
  if [[ ! -f $run/train/model/config.json ]]; then
    log "row $name: $STEPS steps of conf/$conf.yaml ${extra[*]:-} from $FROM"
    resume=()
    [[ -f $run/train/checkpoints/latest.pt ]] && resume=(--resume)
    $VCONV extract "$TRAIN" -o "$EXP/features" -c "$RECIPE_DIR/conf/$conf.yaml" --frontends "$FRONTENDS" --no-progress \
      --allow-skips --no-stats >/dev/null  # adds what this row's model reads (e.g. the pitch rows) to the features
    $VCONV extract "$EXP/data/valid.jsonl" -o "$EXP/features" -c "$RECIPE_DIR/conf/$conf.yaml" --frontends "$FRONTENDS" \
      --no-progress --allow-skips --no-stats >/dev/null
    $VCONV train -c "$RECIPE_DIR/conf/$conf.yaml" "train.train_manifest=$TRAIN" "train.valid_manifest=$EXP/data/valid.jsonl" \
      "train.features_dir=$EXP/features" "train.frontends_dir=$FRONTENDS" "train.run_dir=$run/train" \
      "train.steps=$STEPS" train.bf16=true train.lr=0.0002 train.warmup_steps=200 model.adversary.kind=none model.n_speakers=41 \
      "train.init_from=$FROM" train.critics.mel_gan.weight=0.1 train.critics.mel_gan.fm_weight=0.2 ${extra[@]+"${extra[@]}"} \
      --threads "$THREADS" --no-progress ${resume[@]+"${resume[@]}"}
  fi
  [[ -f $run/train/model/vocoder.json ]] || $VCONV bundle attach-vocoder "$run/train/model" "$FROM"
  log "row $name: judging"
  judge "$run/train/model" "$run/eval"
done
log "judging the starting bundle $FROM"
judge "$FROM" "$EXP/finetune/from/eval"
log "done"
