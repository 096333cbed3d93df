#!/usr/bin/env bash
# The README's quick start, on the embedded default (CPU, ONNX Runtime): demo data -> train FAIR c=32 briefly ->
# evaluate -> export the inspection graph -> calibrate the pass/fail threshold on a video of good parts it never
# saw -> stream a video through the runtime, printing verdicts and writing overlays. It uses the README's paths,
# so the README's next commands (e.g. `python -m export.trt --method fair --c 32`, which takes the newest fair c=32 run under runs/) work
# right after it:
#   demo_data/                  the generated data set (MVTec layout)
#   runs/fair_c32_CAT/          the trained run
#   models/fair_c32_CAT.onnx    the inspection graph, its manifest models/fair_c32_CAT.json beside it
#   demo_out/                   accuracy.json, its overlays, the video and what the runtime wrote
# Override with DATA=..., RUNS=..., MODELS=..., OUT=..., CAT=..., STEPS=..., SIZE=...
set -euo pipefail
DATA=${DATA:-demo_data}
RUNS=${RUNS:-runs}
MODELS=${MODELS:-models}
OUT=${OUT:-demo_out}
CAT=${CAT:-brick}
STEPS=${STEPS:-150}
SIZE=${SIZE:-128}
RUN="$RUNS/fair_c32_$CAT"
MODEL="$MODELS/fair_c32_$CAT.onnx"
mkdir -p "$OUT"
python -m train.demo_data --out "$DATA"
if [ -f "$RUN/model.safetensors" ]; then
    echo "using the trained run in $RUN (delete it to train again)"
else
    python -m train --method fair --c 32 --data "$DATA" --category "$CAT" --image-size "$SIZE" \
        --steps "$STEPS" --batch-size 8 --lr 1e-3 --holdout 0.2 --out "$RUN"
fi
python -m benchmarks.accuracy --run "$RUN" --data "$DATA" --category "$CAT" --json "$OUT/accuracy.json" \
    --overlays "$OUT/accuracy_overlays"
python -m export.onnx --run "$RUN" --out "$MODEL"
# calibrate where the model runs: a video of good parts it never saw (the held-out 20 %), through the
# runtime's frame path, so the video's compression is in the threshold
python scripts/frames_to_video.py "$DATA/$CAT/train/good" "$OUT/good.avi" --holdout 0.2
python -m calibration.threshold --model "$MODEL" --source "$OUT/good.avi" --target-fpr 0.05
python scripts/frames_to_video.py "$DATA/$CAT/test" "$OUT/line.avi"
python -m runtime --model "$MODEL" --source "$OUT/line.avi" --out "$OUT/stream"
ROOT_FLAG=$([ "$RUNS" = runs ] && echo "" || echo " --runs-root $RUNS")  # export.trt looks in runs/ by default
cat <<EOF

Demo done. Outputs:
  data set         $DATA/$CAT/
  trained run      $RUN/
  model            $MODEL (manifest with the threshold: ${MODEL%.onnx}.json)
  accuracy         $OUT/accuracy.json, overlays in $OUT/accuracy_overlays/
  runtime output   $OUT/stream/inspect.jsonl, overlays in $OUT/stream/overlays/
Next:
  python -m runtime --model $MODEL --source $DATA/$CAT/test --serve 8080   # live view on http://127.0.0.1:8080/
  python -m export.trt --method fair --c 32$ROOT_FLAG --precision fp16   # TensorRT engine in engines/ (NVIDIA GPU)
  See docs/methods.md (other methods, your own data) and docs/deployment.md (cameras, Jetson, TensorRT).
EOF
