"""``python -m repro_core.analysis ...``: ``repro score`` without the ``repro`` entry point."""

import sys

from .command import main

sys.exit(main())
