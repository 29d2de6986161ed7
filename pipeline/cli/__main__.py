"""``python -m pipeline.cli``: the ``orsight`` command."""
import sys

from pipeline.cli import main

sys.exit(main())
