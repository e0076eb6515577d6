#!/usr/bin/env bash
# One prepared pass over the GPU paths, for a machine with one CUDA GPU (needs no install: it runs the
# package from src/ with whatever torch/torchvision the machine has).
#
#   bash benchmarks/gpu_check.sh OUT_DIR [ABLATION_SECONDS] [SEEDS...]
#
# 1. (in the background, first) the DKD ablation of benchmarks/ablation.py on the GPU, one process per
#    seed, most informative rows first, stopped after ABLATION_SECONDS (default 400) and tabulated from the
#    steps that finished (--collect); its JSON records and logs are packed into OUT_DIR/ablation.tgz;
# 2. (meanwhile; correctness, not speed) a bf16-autocast training launched by torchrun, resumed from its
#    epoch-1 checkpoint, tested on the GPU with CBGM; an fp16 training (GradScaler path). With one GPU,
#    torchrun starts one process, which trains without DDP: NCCL, DDP and SyncBatchNorm need >= 2 GPUs
#    (set NPROC=2 there; NCCL refuses two ranks on one GPU);
# 3. (after the ablation, on an otherwise idle machine) benchmarks/speed.py --device cuda, bf16 and fp32.
# Everything prints to stdout and OUT_DIR/*.txt.
set -u
OUT=${1:?usage: gpu_check.sh OUT_DIR [ABLATION_SECONDS] [SEEDS...]}
ABL_SECONDS=${2:-400}
shift 2 2>/dev/null || shift $#
SEEDS=${*:-0 1 2 3 4 5}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
START=$SECONDS
stamp() { echo "[$((SECONDS - START)) s] $*"; }

stamp "environment" | tee "$OUT/checks.txt"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
    nproc
} 2>&1 | tee -a "$OUT/checks.txt"

# 1. the ablation, one background process per seed
ABL="$WORK/ablation"
ROWS="baseline rebalanced sia teacher two_step p p_pr p_pr_tr"
pids=()
for seed in $SEEDS; do
    OMP_NUM_THREADS=2 $PY benchmarks/ablation.py --work "$ABL" --seeds "$seed" --rows $ROWS \
        >"$WORK/ablation_seed$seed.out" 2>&1 &
    pids+=($!)
done
stamp "ablation started: seeds $SEEDS, $ABL_SECONDS s"

# 2. correctness of the GPU training paths
check() {  # name, command...: run it, report ok/FAILED with the log's tail
    local name=$1
    shift
    stamp "$name"
    if "$@" >"$WORK/$name.log" 2>&1; then
        tail -n 3 "$WORK/$name.log"
        stamp "$name: ok"
    else
        tail -n 25 "$WORK/$name.log"
        stamp "$name: FAILED"
    fi
}
TRAIN=(--no-progress --config configs/synthetic_cpu.yaml "dataset.root=$WORK/tiny" train.epochs=2
       train.max_iters_per_epoch=6 train.eval_period=-1 train.tensorboard=false train.workers=2)
{
    check synth $PY -m personsearch.cli synth --format cuhk-sysu --out "$WORK/tiny" --preset tiny
    check torchrun-bf16-syncbn $PY -m torch.distributed.run --standalone --nproc_per_node="${NPROC:-1}" \
        -m personsearch.cli train "${TRAIN[@]}" "output_dir=$WORK/ddp" train.amp=bf16 train.sync_bn=true
    head -n 3 "$WORK/ddp/log.txt"
    cp "$WORK/ddp/epoch_002.pth" "$WORK/epoch_002_first.pth" 2>/dev/null
    check torchrun-resume $PY -m torch.distributed.run --standalone --nproc_per_node="${NPROC:-1}" \
        -m personsearch.cli train --no-progress --resume "$WORK/ddp/epoch_001.pth"
    $PY - "$WORK/epoch_002_first.pth" "$WORK/ddp/epoch_002.pth" <<'EOF'
import sys, torch
a, b = (torch.load(p, map_location="cpu", weights_only=True)["model"] for p in sys.argv[1:])
diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())
print(f"resumed epoch 2 vs uninterrupted epoch 2: max |weight difference| = {diff:.3g} "
      "(CUDA kernels such as RoIAlign backward are not bit-deterministic)")
EOF
    check fp16-gradscaler $PY -m personsearch.cli train "${TRAIN[@]}" "output_dir=$WORK/fp16" train.amp=fp16
    check test-cuda-cbgm $PY -m personsearch.cli test --no-progress --checkpoint "$WORK/ddp/last.pth" \
        --dataset cuhk-sysu --root "$WORK/tiny" --device cuda --cbgm --json "$WORK/test.json"
} 2>&1 | tee -a "$OUT/checks.txt"

# wait for the ablation until its deadline, then stop it and tabulate what finished
while [ $((SECONDS - START)) -lt "$ABL_SECONDS" ]; do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 5
done
stamp "ablation: stopping" | tee -a "$OUT/checks.txt"
pkill -f "benchmarks/ablation.py" 2>/dev/null
pkill -f "personsearch.cli" 2>/dev/null
sleep 2
# shellcheck disable=SC2086
$PY benchmarks/ablation.py --work "$ABL" --seeds $SEEDS --rows $ROWS --collect --markdown "$OUT/ablation.md" \
    2>&1 | tail -n 12 | tee -a "$OUT/checks.txt"
tail -n 4 "$WORK"/ablation_seed*.out >>"$OUT/checks.txt"
(cd "$ABL" && tar czf "$OUT/ablation.tgz" --exclude='*.pth' --exclude='CUHK-SYSU' --exclude='events.*' .)

# 3. speed on the otherwise idle GPU
stamp "speed bf16" | tee -a "$OUT/checks.txt"
timeout 150 $PY benchmarks/speed.py --device cuda --amp bf16 --work "$WORK/speed" 2>&1 | tee "$OUT/speed_bf16.txt"
stamp "speed fp32" | tee -a "$OUT/checks.txt"
timeout 90 $PY benchmarks/speed.py --device cuda --amp off --cases paper demo 2>&1 | tee "$OUT/speed_fp32.txt"
stamp "done" | tee -a "$OUT/checks.txt"
