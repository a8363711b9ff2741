#!/usr/bin/env bash
# VCTK recipe: prepare -> extract -> train -> train vocoder -> evaluate.
#
#   ./run.sh                                                       # everything, one GPU; VCTK in data/VCTK-Corpus-0.92
#   VCTK_ROOT=path/to/VCTK-Corpus-0.92 ./run.sh                    # the corpus elsewhere
#   NGPU=4 ./run.sh --stage 3 --stop-stage 3                       # train on 4 GPUs (torchrun)
#   CONF=conf/ablations/no_adversary.yaml EXP=exp/vctk_noadv ./run.sh
#   CONF=conf/debug.yaml EXP=exp/debug ./run.sh                    # CPU smoke test
#
# Every stage is skipped when its output exists, so a rerun continues where the last one stopped;
# an interrupted training run resumes from its latest checkpoint. Delete a stage's output to redo it.
#
# Environment: VCTK_ROOT (the corpus, 0.92 or 0.80 layout; default data/VCTK-Corpus-0.92 in this recipe's
# folder), EXP (outputs, default exp/vctk in this recipe's folder), CONF (run config, default
# conf/base.yaml), NGPU (default 1), MIC (0.92: mic1|mic2, default mic2), UNSEEN (file
# of held-out speakers, default conf/unseen_speakers.txt), VALID_FRACTION (default 0.05), NJ (extract
# workers, default: number of cores), VOCODER_CONF (vocoder run config; default vconv's defaults, or
# conf/vocoder_debug.yaml when CONF is conf/debug.yaml), FRONTENDS (pretrained front-end weights for a
# CONF whose model reads Whisper states, e.g. conf/base.yaml; default EXP/frontends, made
# by stage 2 with `vconv frontend prepare`, which needs pip install 'vconv[frontends]'),
# EVAL_SOURCES (default 5: source utterances per ordered speaker pair; 20 unseen speakers -> 380 pairs x 5), PYTHON / VCONV (how to run vconv).
# Relative paths given in the environment are relative to the current folder (CONF, VOCODER_CONF: or to this recipe's).
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

stage=1
stop_stage=5
while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (use --stage N --stop-stage M)" >&2; exit 1 ;;
  esac
done

VCTK_ROOT=${VCTK_ROOT:-$RECIPE_DIR/data/VCTK-Corpus-0.92}
EXP=${EXP:-$RECIPE_DIR/exp/vctk}
CONF=${CONF:-conf/base.yaml}
NGPU=${NGPU:-1}
MIC=${MIC:-mic2}
UNSEEN=${UNSEEN:-$RECIPE_DIR/conf/unseen_speakers.txt}
VALID_FRACTION=${VALID_FRACTION:-0.05}
NJ=${NJ:-$(nproc 2>/dev/null || echo 1)}
FRONTENDS=${FRONTENDS:-$EXP/frontends}
EVAL_SOURCES=${EVAL_SOURCES:-5}
# the repository's .venv (the README's set-up) when there is one, so the recipe runs without activating it
PYTHON=${PYTHON:-$(if [[ -x "$RECIPE_DIR/../../.venv/bin/python" ]]; then echo "$RECIPE_DIR/../../.venv/bin/python"; else echo python3; fi)}
VCONV=${VCONV:-$PYTHON -m vconv}  # word-split on purpose: "python -m vconv" is three words

# conf/... paths are relative to this recipe, wherever run.sh is called from
if [[ ! -f $CONF && -f $RECIPE_DIR/$CONF ]]; then CONF=$RECIPE_DIR/$CONF; fi
[[ -f $CONF ]] || { echo "run.sh: config $CONF not found" >&2; exit 1; }
# the CPU debug config gets the 2-step vocoder config too, so a smoke test never starts a 200k-step run
if [[ -z ${VOCODER_CONF:-} && $(basename "$CONF") == debug.yaml ]]; then VOCODER_CONF=conf/vocoder_debug.yaml; fi
VOCODER_CONF=${VOCODER_CONF:-}
if [[ -n $VOCODER_CONF && ! -f $VOCODER_CONF && -f $RECIPE_DIR/$VOCODER_CONF ]]; then VOCODER_CONF=$RECIPE_DIR/$VOCODER_CONF; fi
[[ -f $UNSEEN ]] || { echo "run.sh: unseen speaker list $UNSEEN not found" >&2; exit 1; }

data=$EXP/data
feats=$EXP/features
run=$EXP/train
log() { echo "[$(date +%H:%M:%S)] $*"; }
nonempty() { [[ -s $1 ]]; }  # an empty split (e.g. valid on a tiny corpus) is simply left out

if [[ $stage -le 1 && $stop_stage -ge 1 ]]; then
  if [[ -f $data/split.json ]]; then
    log "stage 1: $data/split.json exists, skipping preparation"
  else
    if [[ ! -d $VCTK_ROOT ]]; then
      echo "run.sh: no VCTK corpus at $VCTK_ROOT; unpack VCTK there or set VCTK_ROOT to the folder holding wav48_silence_trimmed/ (0.92) or wav48/ (0.80)" >&2
      exit 1
    fi
    log "stage 1: prepare $VCTK_ROOT -> $data"
    # --force: manifests from an interrupted earlier attempt (no split.json yet) are incomplete;
    # --allow-skips: a few unusable VCTK files are listed on stderr (and in split.json), not fatal
    $VCONV prepare "$VCTK_ROOT" --out "$data" --layout vctk --mic "$MIC" \
      --test-speakers "$(sed 's/#.*//' "$UNSEEN" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -)" \
      --valid-fraction "$VALID_FRACTION" --seed 0 --force --allow-skips
  fi
fi

if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  done_mark=$feats/.done.$(basename "$CONF" .yaml)  # per config: another model may read other front-ends
  if [[ -f $done_mark ]]; then
    log "stage 2: $done_mark exists, skipping feature extraction"
  else
    log "stage 2: extract features -> $feats"
    # every utterance once, with the run config's own features section (so training finds matching
    # feature files); normalisation statistics from the training split only
    # (+ the Whisper states the model reads, from the front-end folder made first)
    [[ -f $FRONTENDS/frontends.json ]] || $VCONV frontend prepare -o "$FRONTENDS"
    $VCONV extract "$data/all.jsonl" --out "$feats" --config "$CONF" --frontends "$FRONTENDS" -j "$NJ" --no-progress \
      --stats-from "$data/train.jsonl" --allow-skips  # a few unusable VCTK files are listed, not fatal
    touch "$done_mark"
  fi
fi

if [[ $stage -le 3 && $stop_stage -ge 3 ]]; then
  if [[ -d $run/model ]]; then
    log "stage 3: $run/model exists, skipping training"
  else
    args=(--config "$CONF" "train.train_manifest=$data/train.jsonl" "train.features_dir=$feats" "train.run_dir=$run"
          "train.frontends_dir=$FRONTENDS")
    if nonempty "$data/valid.jsonl"; then args+=("train.valid_manifest=$data/valid.jsonl"); fi
    if [[ -f $run/checkpoints/latest.pt ]]; then args+=(--resume); log "stage 3: resuming $run"; fi
    log "stage 3: train ($NGPU process(es)) -> $run"
    if [[ $NGPU -gt 1 ]]; then  # python -m torch.distributed.run = torchrun, with this PYTHON's torch
      $PYTHON -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m vconv train "${args[@]}"
    else
      $VCONV train "${args[@]}"
    fi
  fi
fi

if [[ $stage -le 4 && $stop_stage -ge 4 ]]; then
  if ! $VCONV train-vocoder --help >/dev/null 2>&1; then
    log "stage 4: skipped: neural vocoder not available (vconv train-vocoder missing); evaluation uses the bundle's vocoder"
  elif [[ -d $EXP/vocoder/vocoder ]]; then
    log "stage 4: $EXP/vocoder/vocoder exists, skipping vocoder training"
  else
    # trained on the corpus's real mels; --attach copies it into the VC bundle, so stage 5 (and `vconv convert`)
    # use it by default
    vargs=("train.train_manifest=$data/train.jsonl" "train.run_dir=$EXP/vocoder" --attach "$run/model")
    if [[ -n $VOCODER_CONF ]]; then vargs=(--config "$VOCODER_CONF" "${vargs[@]}"); fi
    if nonempty "$data/valid.jsonl"; then vargs+=("train.valid_manifest=$data/valid.jsonl"); fi
    if [[ -f $EXP/vocoder/checkpoints/latest.pt ]]; then vargs+=(--resume); fi
    log "stage 4: train vocoder -> $EXP/vocoder"
    if [[ $NGPU -gt 1 ]]; then
      $PYTHON -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m vconv train-vocoder "${vargs[@]}"
    else
      $VCONV train-vocoder "${vargs[@]}"
    fi
  fi
fi

if [[ $stage -le 5 && $stop_stage -ge 5 ]]; then
  if ! $VCONV evaluate --help >/dev/null 2>&1; then
    log "stage 5: skipped: vconv evaluate not available in this vconv"
  elif [[ -f $EXP/eval/results.json ]]; then
    log "stage 5: $EXP/eval/results.json exists, skipping evaluation"
  else
    # unseen-to-unseen pairs drawn from the test manifest with a fixed seed: the same pairs every run
    log "stage 5: evaluate $run/model on unseen speakers -> $EXP/eval"
    $VCONV evaluate --model "$run/model" --manifest "$data/test.jsonl" --out "$EXP/eval" \
      --sources-per-pair "$EVAL_SOURCES" --seed 0 --no-progress
  fi
  if [[ -f $EXP/eval/summary.md ]]; then log "results table: $EXP/eval/summary.md"; fi
fi

log "done (stages $stage-$stop_stage) in $EXP"
