"""``orsight`` command line. Bad input: one line on stderr, exit status 2 (see README for all codes).

    orsight run --source phantom --publish ipc:///tmp/or.sock
"""
from __future__ import annotations

import sys

from calibration.camera import CalibrationError
from pipeline.cli import calibrate, live, model, replay
from pipeline.cli.common import EXIT_BAD_INPUT, Parser, UsageError
from pipeline.transport.untrusted import TransportError

EXIT_INTERRUPTED = 130


def build_parser() -> Parser:
    from pipeline import __version__

    parser = Parser(prog="orsight", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"orsight {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (live, replay, calibrate, model):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.config import ConfigError
    from pipeline.core.trust import UntrustedModel
    from pipeline.runtime.graph import GraphError
    from pipeline.runtime.video import ReplayError
    from pipeline.sources.capture import SourceError
    from pipeline.stages.infer import ModelError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (UsageError, ConfigError, GraphError, SourceError, ModelError, TransportError, CalibrationError,
            ReplayError, UntrustedModel) as error:
        print(f"orsight: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
