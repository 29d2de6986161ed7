"""``orsight`` command line. Bad input: one line on stderr, exit status 2 (see README for all codes).

    orsight run --source phantom --publish ipc:///tmp/or.sock
"""
from __future__ import annotations

import os
import signal
import sys

from calibration.camera import CalibrationError
from pipeline.cli import calibrate, live, model, privacy, replay
from pipeline.cli.common import EXIT_BAD_INPUT, Parser, UsageError
from pipeline.transport.untrusted import TransportError

EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM and SIGHUP give 128 + their number when they cut a command short


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (systemd, docker stop): every command stops as cleanly as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def build_parser() -> Parser:
    from pipeline.core.version import __version__

    parser = Parser(prog="orsight", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"orsight {__version__}")
    parser.add_argument("--group-readable", action="store_true",
                        help="files written (recordings, results, logs) readable by the group; "
                             "by default only by this user (patient data)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (live, replay, calibrate, model, privacy):
        group.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.core.trust import UntrustedModel
    from pipeline.runtime.config import ConfigError
    from pipeline.runtime.graph import GraphError
    from pipeline.runtime.video import ReplayError
    from pipeline.sources.capture import SourceError
    from pipeline.stages.infer import ModelError

    args = build_parser().parse_args(argv)
    os.umask(0o027 if args.group_readable else 0o077)  # patient video and results: 0600 files, 0700 folders
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_terminated)
    try:
        return args.handler(args)
    except (UsageError, ConfigError, GraphError, SourceError, ModelError, TransportError, CalibrationError,
            ReplayError, UntrustedModel) as error:
        print(f"orsight: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Terminated as stop:
        return 128 + stop.signum
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
