#!/usr/bin/env bash
# The runtime install alone (`pip install .`: no torch, no ultralytics), as an OR box has it: every command
# the README says it runs works on small inputs, and every command that needs an extra says so in one line
# with exit status 2. Run by .ci/run after the tests; usage: .ci/runtime_only.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-runtime}"
[ -x "$venv/bin/orsight" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q .; }
orsight="$venv/bin/orsight"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { echo "runtime install: $*"; }

step demo
"$orsight" demo --frames 40 --out "$work/demo" >/dev/null
step run
"$orsight" run --frames 10 --publish "ipc://$work/run.sock" >/dev/null
step "run + display --headless --record"
"$orsight" run --frames 90 --realtime --publish "ipc://$work/live.sock" >/dev/null &
"$orsight" display --connect "ipc://$work/live.sock" --headless --record "$work/shown.mp4" --frames 30 >/dev/null
wait
step replay
"$orsight" replay "$work/demo/display.mp4" --out "$work/replay" --no-progress --pseudonym-key "$work/key" >/dev/null
step anonymize
"$orsight" anonymize "$work/demo/display.mp4" --out "$work/anon" --pseudonym-key "$work/key" >/dev/null
step "dataset phantom + eval"
"$orsight" dataset phantom --n 6 --out "$work/ph" --imgsz 320 >/dev/null
"$orsight" eval --data "$work/ph" --image-glob 'images/val/*' --mask-pattern 'masks/val/{stem}.png' \
    --mapping 1:0,2:1 --ignore 255 >/dev/null
step "calibrate + scale (views rendered here)"
"$venv/bin/python" - "$work/views" "$work/oob" <<'PY'
import csv
import sys
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import Board
from calibration.camera import CameraModel
from calibration.synthetic import pose_looking_at, render_view

out = Path(sys.argv[1])
out.mkdir()
board = Board("charuco", 14, 10, 8.0)
camera = CameraModel("pinhole", np.array([[600.0, 0, 322], [0, 605, 236], [0, 0, 1]]),
                     np.array([-0.25, 0.08, 0.001, -0.001, 0.0]), (640, 480))
rng = np.random.default_rng(0)
for i in range(8):
    rvec = rng.uniform(-0.4, 0.4, 3) * [1, 1, 0] + [0, 0, rng.uniform(-1, 1)]
    pose = pose_looking_at((56 + rng.uniform(-8, 8), 40 + rng.uniform(-8, 8)), rvec, 70 * rng.uniform(0.9, 1.1))
    cv2.imwrite(str(out / f"v{i}.png"), render_view(board, camera, *pose, noise=2.0, seed=i))
from pipeline.sources.phantom import PhantomScene  # noqa: E402  (frames for eval-privacy)

oob = Path(sys.argv[2])
oob.mkdir()
scene = PhantomScene(640, 360, fps=30.0, scenario="outside")
rows = [("inside0.png", scene.render(10)[0], "inside"), ("outside0.png", scene.render(70)[0], "outside"),
        ("blank0.png", np.zeros((360, 640, 3), np.uint8), "blank")]
with (oob / "labels.csv").open("w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["file", "label"])
    for name, image, label in rows:
        cv2.imwrite(str(oob / name), image)
        writer.writerow([name, label])
PY
"$orsight" calibrate "$work/views" --pattern charuco --board 14x10 --square 8 --out "$work/scope.yaml" >/dev/null
"$orsight" scale --points 10,10,110,10 --length-mm 5 --calibration "$work/scope.yaml" >/dev/null
step "audit verify + keys"
"$orsight" audit verify "$work/demo/audit.jsonl" >/dev/null
"$orsight" keys --out "$work/keys" >/dev/null
step "eval-privacy"
"$orsight" eval-privacy --data "$work/oob" --json "$work/privacy.json" >/dev/null
set +e
for command in "train --data x.yaml --out $work/t" "export --model x.pt --imgsz 320 --out $work/x.onnx" \
               "train-privacy --data $work/ph --out $work/p.onnx"; do
    step "$command (needs the training extra)"
    # shellcheck disable=SC2086
    err="$("$orsight" $command 2>&1 >/dev/null)"; code=$?
    if [ "$code" -ne 2 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! grep -q "extra" <<<"$err"; then
        echo "runtime install: '$command' gave exit $code and: $err" >&2
        exit 1
    fi
done
echo "runtime install: every command ran"
