#!/usr/bin/env bash
# The README's main job, on the embedded default (CPU, ONNX Runtime): demo data -> train FAIR c=32 briefly ->
# evaluate -> export the inspection graph -> calibrate the pass/fail threshold on a video of good parts ->
# stream a video through the runtime, printing verdicts and writing overlays. Everything lands in ./demo_out (override with OUT=...).
set -euo pipefail
OUT=${OUT:-demo_out}
CAT=${CAT:-brick}
STEPS=${STEPS:-150}
SIZE=${SIZE:-128}
mkdir -p "$OUT"
python -m train.demo_data --out "$OUT/data"
RUN="$OUT/runs/fair-c32-$CAT"
if [ -f "$RUN/model.safetensors" ]; then
    echo "using the trained run in $RUN (delete it to train again)"
else
    python -m train --method fair --c 32 --data "$OUT/data" --category "$CAT" --image-size "$SIZE" \
        --steps "$STEPS" --batch-size 8 --lr 1e-3 --holdout 0.2 --out "$RUN"
fi
python -m benchmarks.accuracy --run "$RUN" --data "$OUT/data" --category "$CAT" \
    --json "$OUT/accuracy.json"
python -m export.onnx --run "$RUN" --out "$OUT/model/fair-c32-$CAT.onnx"
# calibrate where the model runs: a video of good parts it never saw (the held-out 20 %), through the
# runtime's frame path, so the video's compression is in the threshold
python scripts/frames_to_video.py "$OUT/data/$CAT/train/good" "$OUT/good.avi" --holdout 0.2
python -m calibration.threshold --model "$OUT/model/fair-c32-$CAT.onnx" --source "$OUT/good.avi" --target-fpr 0.05
python scripts/frames_to_video.py "$OUT/data/$CAT/test" "$OUT/line.avi"
python -m runtime --model "$OUT/model/fair-c32-$CAT.onnx" --source "$OUT/line.avi" --out "$OUT/stream"
