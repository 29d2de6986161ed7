#!/usr/bin/env bash
# One call on a lent GPU machine: GPU tests, GPU benchmarks, then (with data/) training; results land in $OUT.
# Carry the wheels the image lacks in wheels/ (see the device README):
#   pip download -d wheels ultralytics pyzmq av jsonschema onnx onnxslim  (plus their own dependencies)
set -uo pipefail
OUT=${OUT:-/tmp/orsight-gpu}
mkdir -p "$OUT"
[ -d wheels ] && pip install -q --no-index --find-links wheels ultralytics pyzmq av jsonschema onnx onnxslim 2>&1 | tail -2
pip install -q --no-deps -e . 2>&1 | tail -2
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -m pytest -q -p no:warnings tests/stages/test_cuda.py tests/stages/test_inference.py tests/runtime/test_graph.py 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5
MODEL=$(python -c "from pipeline.stages.infer import DEFAULT_MODEL; print(DEFAULT_MODEL.with_suffix('.pt'))")
python benchmarks/gpu_pipeline.py --model "$MODEL" --json "$OUT/gpu_pipeline.json" 2>&1 | tail -40 | tee "$OUT/gpu_pipeline.txt"

# Training on the lent GPU, when the converted data travelled with the call (git-ignored data/,
# named in carry; never committed: CC BY-NC-SA). Prepare it here, on the CPU machine:
#   orsight dataset convert ../shared/data/endoscapes --out data/endoscapes --imgsz 640
#   mkdir -p data/val && cp -r ../shared/data/endoscapes/val/{images,masks} data/val/
# (38 MB at 640: with the wheels, keep a call under 64 MiB: --imgsz 512, or leave av out when only training.)
# TRAIN_HOURS (default 0.08, about 5 minutes) caps each of the two runs; weights, logs and
# val figures come back in $OUT. Instance model first (the shipped kind), then the semantic one.
if [ -f data/endoscapes/data.yaml ]; then
  HOURS=${TRAIN_HOURS:-0.08}
  python -m pipeline.cli train --data data/endoscapes/data.yaml --out "$OUT/seg640" --imgsz 640 --epochs 300 \
      --hours "$HOURS" --init "$MODEL" --device cuda > "$OUT/seg640.log" 2>&1
  python -m pipeline.cli train --data data/endoscapes/semantic.yaml --out "$OUT/semp2-640" --arch yolo26n-sem-p2 \
      --imgsz 640 --epochs 300 --hours "$HOURS" --init "$MODEL" --class-weights 0.5 --device cuda \
      > "$OUT/semp2-640.log" 2>&1
  for run in seg640 semp2-640; do
    python -m pipeline.cli export --model "$OUT/$run/weights/best.pt" --imgsz 640x384 --out "$OUT/$run.onnx" \
        && python -m pipeline.cli eval --data data/val --model "$OUT/$run.onnx" --json "$OUT/$run-val.json" \
        | tee "$OUT/$run-val.txt"
    rm -f "$OUT/$run/weights/last.pt"  # best.pt is the one to keep; last.pt doubles what comes back
  done
fi
