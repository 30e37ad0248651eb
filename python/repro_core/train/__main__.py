"""``python -m repro_core.train ...`` is ``repro train ...`` (``accelerate launch -m repro_core.train`` too)."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
