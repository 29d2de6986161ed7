"""``orsight dataset``, ``train``, ``eval``, ``export`` and ``quantize``: the model's life cycle."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.cli.common import (
    MODEL_HELP,
    Parser,
    UsageError,
    floats,
    input_size_arg,
    integers,
    pairs,
    positive,
    positive_int,
    resolve_device,
    write_json,
)
from pipeline.training.pairs import DEFAULT_IMAGE_GLOB, DEFAULT_MASK_PATTERN


def add_commands(commands) -> None:
    """The model life-cycle commands: dataset, train, eval, validate, export, quantize, trust, audit."""
    dataset = commands.add_parser("dataset", help="make training datasets (written outside the repo)")
    dataset_kinds = dataset.add_subparsers(dest="kind", required=True, parser_class=Parser)
    convert = dataset_kinds.add_parser("convert", help="SRC/{train,val}/ labelled frames -> YOLO segmentation")
    convert.add_argument("source", help="folder with train/, val/ (test/): images and masks in each")
    _add_pairing_options(convert)
    convert.add_argument("--out", required=True, help="dataset folder to write (outside the repo)")
    convert.add_argument("--mapping", default="6:0,3:1", help="mask value:class index pairs (default Endoscapes)")
    convert.add_argument("--ignore", default="7,255", help="mask values to ignore")
    convert.add_argument("--names", default="instrument,vessel",
                         help="class names in index order (roles come from them: see README)")
    convert.add_argument("--colours", default=None, help="YAML of R,G,B: value for colour-coded masks")
    convert.add_argument("--imgsz", type=positive_int, default=480, help="side of the stored (letterboxed) images")
    convert.set_defaults(handler=command_dataset)
    phantom = dataset_kinds.add_parser("phantom", help="render a labelled phantom dataset")
    phantom.add_argument("--n", type=positive_int, default=600, help="frames to render")
    phantom.add_argument("--out", required=True, help="dataset folder to write (outside the repo)")
    phantom.add_argument("--imgsz", type=positive_int, default=320, help="side of the stored images")
    phantom.set_defaults(handler=command_dataset)

    _add_train(commands)
    _add_evaluation(commands)
    _add_export(commands)
    _add_trust(commands)

def _add_train(commands) -> None:
    """The training command."""
    train = commands.add_parser("train", help="train a segmentation model (ultralytics)")
    train.add_argument("--data", required=True, help="data.yaml from `orsight dataset`")
    train.add_argument("--out", required=True, help="run folder (outside the repo)")
    train.add_argument("--arch", default="yolo26n-seg",
                       help="ultralytics model name, or orsight's: effnetlite0-sem, effnetlite1-sem, effnetlite2-sem "
                            "(ImageNet EfficientNet-Lite0/1/2, semantic), effnetlite0-seg (1, 2: the same backbones, "
                            "instances), yolo26n-sem-p2 (semantic, stride-4 head); semantic ones: --data semantic.yaml")
    train.add_argument("--imgsz", type=positive_int, default=320, help="training input side")
    train.add_argument("--epochs", type=positive_int, default=30, help="epochs (the schedule's length)")
    train.add_argument("--batch", type=positive_int, default=None, help="batch size (default: 16 CPU, 64 CUDA)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--init", default=None, help="start from this .pt (e.g. phantom-pretrained) instead of scratch")
    train.add_argument("--class-weights", type=float, default=0.0, metavar="POWER",
                       help="weight rare classes by inverse frequency to this power, 0-1 (ultralytics cls_pw)")
    train.add_argument("--hours", type=positive, default=None, help="stop after this long (overrides --epochs' schedule)")
    train.add_argument("--lr", type=float, default=None,
                       help="starting learning rate (default 1e-3 for orsight's recipe; lower to fine-tune an --init)")
    train.add_argument("--tversky", default="0.5,0.5", metavar="ALPHA,BETA",
                       help="semantic models: weights of painted-wrongly and missed pixels in the per-class "
                            "overlap loss (0.5,0.5 = Dice; 0.3,0.7 favours recall of thin classes)")
    train.add_argument("--focal", type=float, default=0.0, metavar="GAMMA",
                       help="semantic models: focal cross-entropy with this gamma (e.g. 2; 0 = plain cross-entropy)")
    train.add_argument("--boundary", type=float, default=0.0, metavar="WEIGHT",
                       help="semantic models: add a boundary term (paint weighted by its distance to the truth) "
                            "with this weight (e.g. 1; 0 = none)")
    train.add_argument("--average", type=int, default=0, metavar="EPOCHS",
                       help="also write weights/averaged.pt: the mean of the last EPOCHS epochs' weights (0 = none)")
    train.add_argument("--degrees", type=float, default=0.0,
                       help="turn training pictures by a random angle up to this many degrees either way (0 = none)")
    train.add_argument("--photometric", type=float, default=0.0, metavar="STRENGTH",
                       help="semantic models: jitter training pictures' light colour, haze, focus and noise "
                            "(1 = the documented ranges; 0 = none)")
    train.add_argument("--weight-decay", type=float, default=None, metavar="DECAY",
                       help="AdamW's weight decay on the weights (e.g. 0.05; default: ultralytics' 5e-4)")
    train.add_argument("--seed", type=int, default=0,
                       help="seed of the initialisation, the data order and the augmentations (runs of one "
                            "recipe with other seeds tell its spread)")
    train.set_defaults(handler=command_train)


def _add_evaluation(commands) -> None:
    """Eval and validate: figures on labelled frames, the vessel's operating points."""
    evaluation = commands.add_parser("eval", help="per-class IoU/Dice, mask mAP and speed on labelled frames")
    evaluation.add_argument("--data", required=True, help="folder of labelled frames (images/ and masks/ by default)")
    _add_pairing_options(evaluation)
    evaluation.add_argument("--model", default=None, help=MODEL_HELP)
    evaluation.add_argument("--mapping", default="6:0,3:1",
                            help="mask value:class index pairs, in the model's class order (default Endoscapes)")
    evaluation.add_argument("--ignore", default="7,255", help="mask values left out of every figure")
    evaluation.add_argument("--colours", default=None, help="YAML of R,G,B: value for colour-coded masks")
    evaluation.add_argument("--json", default=None, help="write the report as JSON here")
    evaluation.add_argument("--plot", default=None, help="write the vessel's ROC and reliability plot (PNG) here")
    evaluation.add_argument("--skip-missing", action="store_true", help="score the images that have a mask, "
                                                                       "listing the others (default: refuse)")
    evaluation.add_argument("--allow-unmapped", action="store_true",
                            help="score even when no mask value maps to a class of the model (it then reads 0)")
    evaluation.set_defaults(handler=command_eval)
    validation = commands.add_parser("validate", help="choose and store the vessel's HIGH and ADVISORY operating "
                                                      "points on labelled frames (a validation split)")
    validation.add_argument("--data", required=True, help="folder of labelled frames, never trained on")
    _add_pairing_options(validation)
    validation.add_argument("--model", required=True, help=".onnx or .pt model")
    validation.add_argument("--out", required=True, help="the model with its operating points (may be --model)")
    validation.add_argument("--mapping", default="6:0,3:1", help="mask value:class index pairs (default Endoscapes)")
    validation.add_argument("--ignore", default="7,255", help="mask values left out of every figure")
    validation.add_argument("--colours", default=None, help="YAML of R,G,B: value for colour-coded masks")
    validation.add_argument("--describe", default=None,
                            help="the data in words, stored with the points (default: folder and frame count)")
    validation.add_argument("--json", default=None, help="write the report at the chosen points as JSON here")
    validation.add_argument("--plot", default=None, help="write the ROC and reliability plot (PNG) here")
    validation.set_defaults(handler=command_validate)


def _add_export(commands) -> None:
    """Export and quantize: the model files."""
    export = commands.add_parser("export", help=".pt -> ONNX (and TensorRT where present)")
    export.add_argument("--model", required=True, help="ultralytics .pt checkpoint")
    export.add_argument("--imgsz", type=input_size_arg, required=True, help="N (square) or WxH, e.g. 512x288")
    export.add_argument("--out", required=True, help=".onnx file to write")
    export.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default: ultralytics')")
    export.add_argument("--dynamic", action="store_true",
                        help="dynamic batch and input shape (replay --batch; the input fitted to each picture)")
    export.add_argument("--tensorrt", action="store_true", help="also build a TensorRT engine")
    export.set_defaults(handler=command_export)
    quantize = commands.add_parser("quantize", help="ONNX -> int8 ONNX for the CPU, calibrated on your frames")
    quantize.add_argument("--model", required=True, help="float .onnx (a --dynamic export)")
    quantize.add_argument("--calibration", required=True, nargs="+", metavar="FOLDER",
                          help="folders of frames like those the model will see (images in any subfolder)")
    quantize.add_argument("--frames", type=positive_int, default=128, help="calibration frames, spread over the folders")
    quantize.add_argument("--out", required=True, help=".onnx file to write")
    quantize.set_defaults(handler=command_quantize)


def _add_trust(commands) -> None:
    """Trust and audit."""
    trust = commands.add_parser("trust", help="allow a .pt checkpoint you know the origin of to be loaded "
                                              "(a .pt runs code when loaded)")
    trust.add_argument("checkpoint", help=".pt file")
    trust.add_argument("--yes", action="store_true",
                       help="trust it (without: its hash, size and date are shown, nothing is changed)")
    trust.set_defaults(handler=command_trust)
    audit = commands.add_parser("audit", help="check an audit log")
    audit_kinds = audit.add_subparsers(dest="kind", required=True, parser_class=Parser)
    verify = audit_kinds.add_parser("verify", help="every line follows the one before (nothing removed, added "
                                                   "or edited)")
    verify.add_argument("log", help="audit log (JSONL) of `orsight run --audit-log`")
    verify.add_argument("--key", default=None, help="the audit key that signed it (default ~/.config/orsight/audit.key)")
    verify.set_defaults(handler=command_audit_verify)


def _colour_table(path: str | None) -> dict | None:
    """``--colours FILE``: YAML of ``R,G,B: value`` -> ``{(r, g, b): value}``."""
    if path is None:
        return None
    try:
        table = yaml.safe_load(Path(path).read_text())
        return {tuple(int(v) for v in str(k).split(",")): int(v) for k, v in table.items()}
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as error:
        raise UsageError(f"--colours {path}: not a YAML table of R,G,B: value ({error})") from None


def command_dataset(args) -> int:
    from pipeline.training.dataset import convert_masks, write_phantom_dataset

    if args.kind == "phantom":
        path = write_phantom_dataset(args.out, n=args.n, size=args.imgsz)
    else:
        colours = _colour_table(args.colours)
        mapping, names = pairs(args.mapping, "--mapping"), tuple(n for n in args.names.split(",") if n)
        if sorted(set(mapping.values())) != list(range(len(names))):
            raise UsageError(f"--mapping gives classes {sorted(set(mapping.values()))}: --names needs one name "
                             f"for each of 0..{max(mapping.values(), default=0)}, got {len(names)}")
        try:
            path = convert_masks(args.source, args.out, mapping, integers(args.ignore, "--ignore"), names=names,
                                 size=args.imgsz, colours=colours, image_glob=args.image_glob,
                                 mask_pattern=args.mask_pattern)
        except ValueError as error:
            raise UsageError(str(error)) from None
    print(f"wrote {path}")
    return 0


def _add_pairing_options(parser) -> None:
    parser.add_argument("--image-glob", default=DEFAULT_IMAGE_GLOB,
                        help="images, relative to the folder (** for nested folders), e.g. '**/*_endo.png'")
    parser.add_argument("--mask-pattern", default=DEFAULT_MASK_PATTERN,
                        help="each image's mask, relative to the folder: {dir} (the image's folder), {stem}, "
                             "{name}, {stem:old=new}; e.g. '{dir}/{stem}_watershed_mask.png', "
                             "'{dir}/{stem:_raw=_class}.png'")


def training_extra(module: str, torch: bool = True):
    """``module`` of the training code, or one line saying how to install it."""
    import importlib

    try:
        if torch:
            importlib.import_module("pipeline.core.yolo")  # torch and ultralytics
        return importlib.import_module(module)
    except ImportError as error:
        raise UsageError(f"this command needs the training extra ({error.name} is missing): "
                         "pip install 'orsight[train]'") from None


def command_train(args) -> int:
    train = training_extra("pipeline.training.train").train

    if not Path(args.data).is_file() and not args.resume:
        raise UsageError(f"no such dataset file: {args.data}")
    try:
        best = train(args.data, args.out, args.arch, args.imgsz, args.epochs, args.batch,
                     resolve_device(args.device), resume=args.resume, init=args.init,
                     class_weight_power=args.class_weights, hours=args.hours,
                     tversky=floats(args.tversky, "--tversky", 2), focal=args.focal, lr=args.lr,
                     boundary=args.boundary, average=args.average, degrees=args.degrees,
                     photometric=args.photometric, seed=args.seed,
                     weight_decay=args.weight_decay)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(f"best weights: {best}")
    return 0


def command_eval(args) -> int:
    from pipeline.stages.infer import load_model
    from pipeline.training.evaluate import evaluate

    model = load_model(args.model)
    try:
        report = evaluate(args.data, model, pairs(args.mapping, "--mapping"), integers(args.ignore, "--ignore"),
                          _colour_table(args.colours), args.image_glob, args.mask_pattern,
                          skip_missing=args.skip_missing, allow_unmapped=args.allow_unmapped)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if report["frames_without_mask"]:
        print(f"left out (no mask): {len(report['frames_without_mask'])} images: "
              + ", ".join(Path(p).name for p in report["frames_without_mask"]))
    fitted = " pixels, fitted to each picture" if report["input_fitted"] else ""
    print(f"{report['frames']} frames, {report['model']}, input {'x'.join(map(str, report['input_size']))}{fitted}")
    columns = ("iou", "dice", "precision", "recall", "frame_mean_iou", "detection_rate", "false_alarm_rate")
    print(f"{'class':12s} {'IoU':>7s} {'Dice':>7s} {'prec':>7s} {'recall':>7s} {'frame IoU':>10s} {'frames':>7s} "
          f"{'detected':>9s} {'false alarm':>12s}")
    for name, c in report["classes"].items():
        iou, dice, precision, recall, frame_iou, detection, alarm = (f"{c[k]:.3f}" if c[k] is not None else "-"
                                                                     for k in columns)
        print(f"{name:12s} {iou:>7s} {dice:>7s} {precision:>7s} {recall:>7s} {frame_iou:>10s} {c['frames_scored']:7d} "
              f"{detection:>9s} {alarm:>12s}")
    mask_map = (f"mask mAP50-95 {report['mask_map50_95']:.3f}  mAP50 {report['mask_map50']:.3f}"
                if report["mask_map50"] is not None else "mask mAP: needs the [train] extra (ultralytics' AP)")
    print(f"{mask_map}  inference {report['ms_per_frame']:.1f} ms/frame")
    _print_vessel_evidence(report, args.plot)
    if args.json:
        write_json(args.json, report)
    return 0


def _print_vessel_evidence(report: dict, plot: str | None) -> None:
    """The vessel's frame evidence as a detector, its figures at the model's points, and the plot."""
    from pipeline.training.vessel_metrics import plot_vessel_report

    for name, c in report["classes"].items():
        if "evidence_roc_auc" not in c:
            continue
        auc, ece = c["evidence_roc_auc"], c.get("pixel_ece")
        print(f"{name} evidence: frame ROC AUC {auc:.3f}" if auc is not None else f"{name} evidence: no ROC AUC",
              f"(temperature {c['temperature']:.2f}" + (f", pixel ECE {ece:.4f})" if ece is not None else ")"))
        for tier in ("high", "advisory"):
            detected, alarm = c[f"{tier}_detected"], c[f"{tier}_false_alarm"]
            print(f"  {tier.upper():8s} " + (f"detected {detected:.3f}  false alarm {alarm:.3f}" if detected is not None
                                             else "no validated point in this model"))
        if plot:
            plot_vessel_report(c, plot)
            print(f"wrote {plot}")


def command_validate(args) -> int:
    from pipeline.stages.infer import ModelError
    from pipeline.training.operating_points import validate

    if not Path(args.model).is_file():
        raise UsageError(f"model file not found: {args.model}")
    try:
        points, report = validate(args.data, args.model, args.out, args.describe,
                                  mapping=pairs(args.mapping, "--mapping"), ignore=integers(args.ignore, "--ignore"),
                                  colours=_colour_table(args.colours), image_glob=args.image_glob,
                                  mask_pattern=args.mask_pattern)
    except (ValueError, FileNotFoundError, ModelError) as error:
        raise UsageError(str(error)) from None
    print(f"temperature {points.temperature:.3f}; frame ROC AUC {points.roc_auc:.3f} "
          f"({points.frames_present} frames with a vessel, {points.frames_absent} without)")
    for tier in ("high", "advisory"):
        point = getattr(points, tier)
        print(f"{tier.upper():8s} " + (f"evidence >= {point.threshold:.6f}: detected {point.detected:.3f}, false alarm "
                                       f"{point.false_alarm:.3f}" if point else "none (no threshold meets the rule)"))
    _print_vessel_evidence(report, args.plot)
    if args.json:
        write_json(args.json, report)
    print(f"wrote {args.out}")
    return 0


def command_export(args) -> int:
    export = training_extra("pipeline.training.export")
    export_onnx, export_tensorrt = export.export_onnx, export.export_tensorrt

    if not Path(args.model).is_file():
        raise UsageError(f"model file not found: {args.model}")
    out = export_onnx(args.model, args.imgsz, args.out, opset=args.opset, dynamic=args.dynamic)
    print(f"wrote {out}")
    if args.tensorrt:
        print(f"wrote {export_tensorrt(args.model, args.imgsz, Path(args.out).with_suffix('.engine'))}")
    return 0


def command_trust(args) -> int:
    import datetime
    import zipfile

    from pipeline.core.trust import sha256, trust, trust_file

    path = Path(args.checkpoint)
    if not path.is_file():
        raise UsageError(f"no such file: {args.checkpoint}")
    if not zipfile.is_zipfile(path):  # torch has saved zip archives since 1.6; anything else is no checkpoint
        raise UsageError(f"{args.checkpoint} is not a torch checkpoint (a zip archive): not trusted")
    facts = path.stat()
    changed = datetime.datetime.fromtimestamp(facts.st_mtime).isoformat(timespec="seconds")
    print(f"{path.resolve()}\n  sha256 {sha256(path)}\n  {facts.st_size:,} bytes, changed {changed}\n"
          "  loading it runs whatever code it holds: trust it only if you know where it came from")
    if not args.yes:
        raise UsageError("not trusted: check the hash with whoever made the file, then run again with --yes")
    print(f"trusted (sha256 {trust(path)}) in {trust_file()}")
    return 0


def command_audit_verify(args) -> int:
    from pipeline.stages.alerts.audit import AUDIT_KEY, audit_key, verify

    if not Path(args.log).is_file():
        raise UsageError(f"no such file: {args.log}")
    try:
        key = audit_key(args.key) if args.key or Path(AUDIT_KEY).expanduser().exists() else None
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the audit key {args.key}: {getattr(error, 'strerror', None) or error}") from None
    problems = verify(args.log, key)
    for problem in problems:
        print(f"{args.log}: {problem}")
    if problems:
        raise UsageError(f"{args.log}: the chain is broken ({len(problems)} problem(s))")
    print(f"{args.log}: intact")
    return 0


def command_quantize(args) -> int:
    quantize_onnx = training_extra("pipeline.training.quantize", torch=False).quantize_onnx  # onnx
    if Path(args.model).suffix != ".onnx":
        raise UsageError(f"--model {args.model}: quantize takes an .onnx export (orsight export --dynamic)")
    try:
        out = quantize_onnx(args.model, args.calibration, args.out, frames=args.frames)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {out}")
    return 0
