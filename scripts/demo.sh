#!/usr/bin/env bash
# The CPU demo (called by `make demo`): synthetic data -> training -> test -> what was learnt, drawn.
#
#   bash scripts/demo.sh [DEMO_DIR]          (default demo_output)
#
# 1. writes the small synthetic CUHK-SYSU-format dataset to DEMO_DIR/data/CUHK-SYSU (regenerated each run);
# 2. trains configs/synthetic_cpu.yaml from scratch into DEMO_DIR/run (about 10 minutes on 2 CPU cores);
# 3. runs `personsearch test` (detection + search at every gallery size) -> DEMO_DIR/results.npz;
# 4. prints the model's search metrics next to random embeddings on the same detections, and draws one
#    query with its top-ranked gallery hits into DEMO_DIR/search.png;
# 5. copies the gallery images into a plain folder plus a short video (scripts/demo_footage.py), builds a
#    gallery index over them (personsearch index build), queries one person whose image the index has not
#    seen (personsearch query) and writes DEMO_DIR/report.html (self-contained) and report.png.
#
# Environment: PERSONSEARCH (the CLI, default .venv/bin/personsearch), DEMO_CONFIG (default
# configs/synthetic_cpu.yaml), DEMO_OVERRIDES (extra key=value training overrides, e.g. "train.epochs=1"
# for a quick smoke run), DEMO_SEED (dataset seed, default 0), OMP_NUM_THREADS (PyTorch threads; by default
# the cores left idle by other work, at least 1: oversubscribed OpenMP threads make PyTorch several times slower).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_DIR="${1:-demo_output}"
PS="${PERSONSEARCH:-$REPO/.venv/bin/personsearch}"
CONFIG="${DEMO_CONFIG:-$REPO/configs/synthetic_cpu.yaml}"
SEED="${DEMO_SEED:-0}"
read -r -a OVERRIDES <<< "${DEMO_OVERRIDES:-}"

DATA="$DEMO_DIR/data/CUHK-SYSU"
RUN="$DEMO_DIR/run"
RESULTS="$DEMO_DIR/results.npz"
PICTURE="$DEMO_DIR/search.png"
PROGRESS=()
[ -t 1 ] || PROGRESS=(--no-progress)

if [ ! -x "$PS" ]; then
    echo "demo: $PS not found; run 'make demo' (it creates the virtual environment) or set PERSONSEARCH" >&2
    exit 2
fi

CORES=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)  # (nproc would report OMP_NUM_THREADS)
if [ -z "${OMP_NUM_THREADS:-}" ]; then
    LOAD=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
    OMP_NUM_THREADS=$(awk -v c="$CORES" -v l="$LOAD" 'BEGIN { t = c - int(l); print (t < 1 ? 1 : t) }')
    export OMP_NUM_THREADS
fi

T0=$SECONDS
STEP_START=$SECONDS
declare -a TIMINGS=()
section() {
    STEP_START=$SECONDS
    echo
    echo "==== $1  [$(date +%H:%M:%S)]"
}
done_step() {
    local took=$((SECONDS - STEP_START))
    TIMINGS+=("$(printf '%-34s %4d s' "$1" "$took")")
    echo "---- $1: ${took} s"
}

echo "personsearch CPU demo -> $DEMO_DIR  (config $(basename "$CONFIG"), $CORES CPU cores," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'), $OMP_NUM_THREADS PyTorch thread(s))"
mkdir -p "$DEMO_DIR"

section "1/5 synthetic CUHK-SYSU-format dataset (preset small, seed $SEED)"
rm -rf "$DATA"
"$PS" synth --format cuhk-sysu --out "$DATA" --preset small --seed "$SEED" --preview "$DEMO_DIR/dataset_preview.png"
done_step "dataset"

section "2/5 training from scratch: $(basename "$CONFIG") ${OVERRIDES[*]:-}"
rm -rf "$RUN"
"$PS" train --config "$CONFIG" "dataset.root=$DATA" "output_dir=$RUN" train.eval_period=-1 \
    "${OVERRIDES[@]}" "${PROGRESS[@]}"
echo "training log ($RUN/log.txt):"
sed 's/^/  /' "$RUN/log.txt"
done_step "training"

section "3/5 test: detection + search with the trained model"
"$PS" test --checkpoint "$RUN/last.pth" --dataset cuhk-sysu --root "$DATA" --out "$RESULTS" \
    --json "$DEMO_DIR/test_metrics.json" --workers 1 "${PROGRESS[@]}"
done_step "test (inference + evaluation)"

section "4/5 what was learnt: trained embeddings vs random embeddings (same detections)"
"$PS" demo-report --dataset cuhk-sysu --root "$DATA" --results "$RESULTS" --seed 0 --gallery-size 100 \
    --top 8 --out "$PICTURE" --json "$DEMO_DIR/comparison.json"
done_step "comparison + picture"

section "5/5 own footage: index a plain folder of JPEGs and a video, query one person"
FOOTAGE="$DEMO_DIR/footage"
INDEX="$DEMO_DIR/index"
REPORT="$DEMO_DIR/report.html"
PY="${DEMO_PYTHON:-$(dirname "$PS")/python}"
BOX=$("$PY" "$REPO/scripts/demo_footage.py" --root "$DATA" --out "$FOOTAGE" | tee /dev/stderr | tail -n 1)
rm -rf "$INDEX"
"$PS" index build --checkpoint "$RUN/last.pth" --out "$INDEX" "$FOOTAGE/images" "$FOOTAGE/street.mp4" \
    --fps 1 "${PROGRESS[@]}"
"$PS" index info --index "$INDEX"
"$PS" query --index "$INDEX" --image "$FOOTAGE/query.jpg" --box "$BOX" --top-k 12 \
    --report "$REPORT" --sheet "$DEMO_DIR/report.png" --json "$DEMO_DIR/hits.json"
done_step "own-footage index + query"

echo
echo "==== summary  (total $((SECONDS - T0)) s)"
printf '  %s\n' "${TIMINGS[@]}"
echo "  dataset preview:  $DEMO_DIR/dataset_preview.png"
echo "  run folder:       $RUN (config.yaml, log.txt, last.pth, tensorboard/)"
echo "  results file:     $RESULTS"
echo "  search picture:   $PICTURE   <- one query and its top-ranked gallery hits (green = correct)"
echo "  own footage:      $FOOTAGE (images/, street.mp4, query.jpg) indexed into $INDEX"
echo "  search report:    $REPORT   <- open in a browser (one self-contained file); $DEMO_DIR/report.png"
