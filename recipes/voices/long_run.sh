#!/usr/bin/env bash
# The long run: continue an ablation row past its budget, in slices that survive the end of a session,
# and judge it on the held-out voices at chosen steps.
#
#   ./recipes/voices/ablation.sh                          # the rows (the long run forks one of them)
#   ROW=whisper_mel:whisper_mel LONG_STEPS=7000 ./recipes/voices/long_run.sh
#   (killed, or the machine went away?  the same command resumes from the last checkpoint)
#
# The row's step-FORK_STEP checkpoint (default 3000; EXP/ablation/<name>/train) is copied to
# EXP/long/<name>/train with its log, and `vconv train --resume` continues it to LONG_STEPS steps: the
# cosine schedule is drawn anew over LONG_STEPS, so at the fork it restarts at lr(FORK_STEP of LONG_STEPS)
# (for 3000 of 7000, about 0.65 of the peak). Training stops at each step of JUDGE_AT (default: only
# LONG_STEPS) with a checkpoint (`--until`); that step is exported (`vconv bundle from-checkpoint`; the
# last one is the run's own model/), the shipped vocoder attached (VOCODER) and judged like the rows
# (`vconv evaluate`, EVAL_SOURCES sources per pair, seed 0) into EXP/long/<name>/eval_<step>. Finished
# slices and reports are skipped. Environment: EXP, ROW (name:config[:override,...] as in ablation.sh),
# FORK_FROM (the ablation row whose checkpoint is forked, default the ROW's own name: a variant such as
# train.mel_gan_weight=0.1 continues another row under a new name), FORK_STEP, LONG_STEPS, BF16 (default false; true for a row that ablation.sh trained with BF16=true), JUDGE_AT (space-separated steps), FRONTENDS, THREADS (default 2), KEEP
# (checkpoints kept, default 4), VOCODER, EVAL_SOURCES, PYTHON / VCONV.
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$RECIPE_DIR/../.." && pwd)
EXP=${EXP:-$RECIPE_DIR/exp/voices}
ROW=${ROW:-whisper_mel:whisper_mel}
FORK_STEP=${FORK_STEP:-3000}
LONG_STEPS=${LONG_STEPS:-7000}
BF16=${BF16:-false}
JUDGE_AT=${JUDGE_AT:-$LONG_STEPS}
FRONTENDS=${FRONTENDS:-$EXP/frontends}
THREADS=${THREADS:-2}
KEEP=${KEEP:-4}
VOCODER=${VOCODER:-$REPO/pretrained/vconv-voices-small}
EVAL_SOURCES=${EVAL_SOURCES:-5}
# the repository's .venv (the README's set-up) when there is one, so the recipe runs without activating it
PYTHON=${PYTHON:-$(if [[ -x "$RECIPE_DIR/../../.venv/bin/python" ]]; then echo "$RECIPE_DIR/../../.venv/bin/python"; else echo python3; fi)}
VCONV=${VCONV:-$PYTHON -m vconv}
log() { echo "[$(date +%H:%M:%S)] $*"; }
fail() { echo "long_run.sh: $*" >&2; exit 1; }

IFS=: read -r name conf overrides <<< "$ROW"
extra=()
[[ -n ${overrides:-} ]] && IFS=, read -r -a extra <<< "$overrides"
source_run=$EXP/ablation/${FORK_FROM:-$name}/train  # FORK_FROM: another row's run to fork (a variant of it)
run=$EXP/long/$name/train
for stop in $JUDGE_AT; do
  [[ $stop =~ ^[0-9]+$ ]] && (( stop > FORK_STEP && stop <= LONG_STEPS )) \
    || fail "JUDGE_AT step '$stop': expected a whole number above FORK_STEP ($FORK_STEP) and at most LONG_STEPS ($LONG_STEPS)"
done

if [[ ! -f $run/checkpoints/latest.pt ]]; then
  fork=$source_run/checkpoints/step_$(printf %08d "$FORK_STEP").pt
  [[ -f $fork ]] || fail "no $fork: train the row first (ablation.sh) or set FORK_STEP to a step it kept"
  log "$name: fork step $FORK_STEP of $source_run into $run"
  mkdir -p "$run/checkpoints"
  cp "$source_run/config.yaml" "$source_run/log.jsonl" "$run/"
  cp "$fork" "$run/checkpoints/$(basename "$fork")"
  cp "$fork" "$run/checkpoints/latest.pt"
fi

for stop in $JUDGE_AT; do
  ckpt=$run/checkpoints/step_$(printf %08d "$stop").pt
  bundle=$EXP/long/$name/model_$stop
  (( stop == LONG_STEPS )) && bundle=$run/model
  if [[ ! -f $bundle/config.json && ! -f $ckpt ]]; then
    log "$name: train to step $stop of $LONG_STEPS"
    $VCONV train -c "$RECIPE_DIR/conf/$conf.yaml" "train.train_manifest=$EXP/data/train.jsonl" \
      "train.valid_manifest=$EXP/data/valid.jsonl" "train.features_dir=$EXP/features" "train.frontends_dir=$FRONTENDS" \
      "train.run_dir=$run" "train.steps=$LONG_STEPS" "train.bf16=$BF16" "train.threads=$THREADS" \
      "train.keep_checkpoints=$KEEP" ${extra[@]+"${extra[@]}"} --no-progress --resume --until "$stop"
  fi
  [[ -f $bundle/config.json ]] || $VCONV bundle from-checkpoint "$ckpt" -o "$bundle" --force
  [[ -f $bundle/vocoder.json ]] || $VCONV bundle attach-vocoder "$bundle" "$VOCODER"
  report=$EXP/long/$name/eval_$stop
  if [[ ! -f $report/results.json ]]; then
    log "$name: evaluate step $stop on the held-out voices"
    rm -rf "$report"
    $VCONV evaluate --model "$bundle" --manifest "$EXP/data/test.jsonl" -o "$report" \
      --sources-per-pair "$EVAL_SOURCES" --seed 0 --no-progress
  fi
done
log "$name: done; reports in $EXP/long/$name/eval_*"
