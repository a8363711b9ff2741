#!/usr/bin/env bash
# The voices recipe: build corpus -> prepare -> extract -> train -> train vocoder -> evaluate -> package.
# By default it trains conf/small.yaml, the mel-input model of the v4 era; the shipped bundle is v6 (CONF=conf/whisper_mel.yaml
# trained as recipes/voices/MODEL_HISTORY.md records) fine-tuned with the pitch path, then with content consistency, by
# finetune.sh (conf/whisper_mel_pitch.yaml; the voices README, "How the shipped model was made", has the commands).
# Stage 6 packages into EXP/pretrained; PRETRAINED=pretrained replaces the shipped bundle (do that only with a better model).
#
#   ./recipes/voices/run.sh                                                # everything (~1.5 h on 2 CPU cores)
#   ./recipes/voices/run.sh --stage 3 --stop-stage 3                       # only (re)train; resumes if killed
#   DATA=path/to/data EXP=path/to/exp ./recipes/voices/run.sh              # corpus and outputs elsewhere
#
# Every stage is skipped when its output exists, so a rerun continues where the last one stopped; the
# training stages resume from their latest checkpoint. Environment: DATA (parent of the corpus folder
# voices/, default data/ in this recipe's folder), EXP (outputs, default exp/voices in this recipe's
# folder), PRETRAINED (where stage 6 writes vconv-voices-small, default EXP/pretrained),
# CONF / VOCODER_CONF (run configs, default conf/small.yaml and conf/vocoder.yaml; conf/whisper_mel.yaml
# and its ablations read the pretrained front-ends), FRONTENDS (their weights folder, default
# EXP/frontends, made by stage 2 with `vconv frontend prepare`), NJ (extract workers),
# EVAL_SOURCES (source utterances per speaker pair, default 5), AUGMENT (pitch/formant pseudo-speakers
# per training voice, default 0; AUGMENT_MAX_PER caps the utterances of each), SHIP_VOCODER (stage 6 attaches the neural vocoder, default 1),
# PYTHON / VCONV (how to run vconv). Relative paths given in the environment are relative to the
# current folder. The corpus builder (stage 0) is local/build_corpus.py.
set -euo pipefail

RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=0
stop_stage=6
while [[ $# -gt 0 ]]; do
  case $1 in
    --stage) stage=$2; shift 2 ;;
    --stop-stage|--stop_stage) stop_stage=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (use --stage N --stop-stage M)" >&2; exit 1 ;;
  esac
done

DATA=${DATA:-$RECIPE_DIR/data}
EXP=${EXP:-$RECIPE_DIR/exp/voices}
PRETRAINED=${PRETRAINED:-$EXP/pretrained}
CONF=${CONF:-$RECIPE_DIR/conf/small.yaml}
VOCODER_CONF=${VOCODER_CONF:-$RECIPE_DIR/conf/vocoder.yaml}
NJ=${NJ:-$(nproc 2>/dev/null || echo 1)}
FRONTENDS=${FRONTENDS:-$EXP/frontends}
EVAL_SOURCES=${EVAL_SOURCES:-5}
AUGMENT=${AUGMENT:-0}
# the repository's .venv (the README's set-up) when there is one, so the recipe runs without activating it
PYTHON=${PYTHON:-$(if [[ -x "$RECIPE_DIR/../../.venv/bin/python" ]]; then echo "$RECIPE_DIR/../../.venv/bin/python"; else echo python3; fi)}
VCONV=${VCONV:-$PYTHON -m vconv}
corpus=$DATA/voices
speaker_list() { sed 's/#.*//' "$1" | tr -s ' \t\n' '\n' | grep -v '^$' | paste -sd, -; }  # comments, blanks dropped
held_out=$(speaker_list "$RECIPE_DIR/held_out.txt")
valid=$(speaker_list "$RECIPE_DIR/valid.txt")  # also kept out of training: validation speakers
log() { echo "[$(date +%H:%M:%S)] $*"; }
resume_flag() { [[ -f $1/checkpoints/latest.pt ]] && echo --resume || true; }

if [[ $stage -le 0 && $stop_stage -ge 0 ]]; then
  log "stage 0: build the corpus in $corpus (installs missing apt/pip packages; AUGMENT=$AUGMENT pseudo-speakers per voice)"
  $PYTHON "$RECIPE_DIR/local/build_corpus.py" --root "$corpus" --augment "$AUGMENT" ${AUGMENT_MAX_PER:+--augment-max-per "$AUGMENT_MAX_PER"}
fi
if [[ $stage -le 1 && $stop_stage -ge 1 && ! -f $EXP/data/all.jsonl ]]; then
  log "stage 1: manifests; test = $held_out; valid = $valid"
  $VCONV prepare "$corpus" -o "$EXP/data" --test-speakers "$held_out" --valid-speakers "$valid" --min-seconds 0.8
fi
if [[ $stage -le 2 && $stop_stage -ge 2 ]]; then
  log "stage 2: front-end weights and features (the run config's features section, plus the Whisper states /
  pitch rows its model reads; normalisation statistics from the training split only)"
  [[ -f $FRONTENDS/frontends.json ]] || $VCONV frontend prepare -o "$FRONTENDS"
  $VCONV extract "$EXP/data/all.jsonl" -o "$EXP/features" -c "$CONF" --frontends "$FRONTENDS" -j "$NJ" --no-progress \
    --stats-from "$EXP/data/train.jsonl" --allow-skips  # skipped files are listed on stderr, not fatal
fi
if [[ $stage -le 3 && $stop_stage -ge 3 && ! -f $EXP/train/model/config.json ]]; then
  log "stage 3: train the VC model"
  $VCONV train -c "$CONF" "train.train_manifest=$EXP/data/train.jsonl" "train.valid_manifest=$EXP/data/valid.jsonl" \
    "train.features_dir=$EXP/features" "train.frontends_dir=$FRONTENDS" "train.run_dir=$EXP/train" --no-progress \
    $(resume_flag "$EXP/train")
fi
if [[ $stage -le 4 && $stop_stage -ge 4 && ! -f $EXP/vocoder/vocoder/vocoder.json ]]; then
  log "stage 4: train the neural vocoder"
  $VCONV train-vocoder -c "$VOCODER_CONF" "train.train_manifest=$EXP/data/train.jsonl" \
    "train.valid_manifest=$EXP/data/valid.jsonl" "train.run_dir=$EXP/vocoder" \
    --no-progress $(resume_flag "$EXP/vocoder")
fi
if [[ $stage -le 5 && $stop_stage -ge 5 ]]; then
  # each part has its own skip check, so a vocoder finished after a first stage 5 still gets judged
  if [[ ! -f $EXP/eval/results.json ]]; then
    log "stage 5: evaluate the model on the held-out voices with the independent judges (Griffin-Lim)"
    $VCONV evaluate --model "$EXP/train/model" --vocoder griffinlim --manifest "$EXP/data/test.jsonl" -o "$EXP/eval" \
      --sources-per-pair "$EVAL_SOURCES" --seed 0 --no-progress
  fi
  if [[ -f $EXP/vocoder/vocoder/vocoder.json && ! -f $EXP/eval_neural/results.json ]]; then
    log "stage 5: judge the neural vocoder alone, then the model with it attached"
    $PYTHON "$RECIPE_DIR/../../benchmarks/bench_vocoder_quality.py" --manifest "$EXP/data/test.jsonl" \
      --vocoder-dir "$EXP/vocoder/vocoder" --n 100 | tee "$EXP/vocoder_quality.md"
    rm -rf "$EXP/model_neural" && cp -r "$EXP/train/model" "$EXP/model_neural"
    $VCONV bundle attach-vocoder "$EXP/model_neural" "$EXP/vocoder/vocoder"
    $VCONV evaluate --model "$EXP/model_neural" --manifest "$EXP/data/test.jsonl" -o "$EXP/eval_neural" \
      --sources-per-pair "$EVAL_SOURCES" --seed 0 --no-progress
  fi
fi
if [[ $stage -le 6 && $stop_stage -ge 6 ]]; then
  # the neural vocoder is attached (convert then uses it by default) as in the shipped bundle; set
  # SHIP_VOCODER=0 when yours does not beat Griffin-Lim on all three judges of $EXP/vocoder_quality.md
  log "stage 6: write the fp16 bundle + model card into $PRETRAINED (SHIP_VOCODER=${SHIP_VOCODER:-1})"
  ship=(--out "$PRETRAINED" --name vconv-voices-small --card "$RECIPE_DIR/conf/model_card.md"
        --held-out "$RECIPE_DIR/held_out.txt" --notes "$RECIPE_DIR/MODEL_HISTORY.md" --force)
  if [[ ${SHIP_VOCODER:-1} == 1 && -f $EXP/vocoder/vocoder/vocoder.json && -f $EXP/eval_neural/summary.md ]]; then
    $VCONV bundle package "$EXP/train" "${ship[@]}" --eval "$EXP/eval_neural" --vocoder "$EXP/vocoder/vocoder"
  else
    if [[ -f $EXP/eval/summary.md ]]; then ship+=(--eval "$EXP/eval"); fi  # else the card says "not evaluated yet"
    $VCONV bundle package "$EXP/train" "${ship[@]}"
  fi
fi
log "done"
