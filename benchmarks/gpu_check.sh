#!/usr/bin/env bash
# One call on a lent GPU machine: GPU tests, then GPU benchmarks; results land in $OUT.
# Carry the wheels the image lacks in wheels/ (see the device README):
#   pip download -d wheels ultralytics pyzmq av jsonschema onnx onnxslim  (plus their own dependencies)
set -uo pipefail
OUT=${OUT:-/tmp/orsight-gpu}
mkdir -p "$OUT"
[ -d wheels ] && pip install -q --no-index --find-links wheels ultralytics pyzmq av jsonschema onnx onnxslim 2>&1 | tail -2
pip install -q --no-deps -e . 2>&1 | tail -2
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python -m pytest -q -p no:warnings tests/test_cuda.py tests/test_inference.py 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5
MODEL=$(python -c "from pipeline.inference import DEFAULT_MODEL; print(DEFAULT_MODEL.with_suffix('.pt'))")
python benchmarks/gpu_pipeline.py --model "$MODEL" --json "$OUT/gpu_pipeline.json" 2>&1 | tail -40 | tee "$OUT/gpu_pipeline.txt"
