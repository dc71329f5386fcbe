"""``python -m tap_cube.simulator``: serve a fake Cube API until SIGINT or SIGTERM."""

import sys

from tap_cube.simulator import main

if __name__ == "__main__":
    sys.exit(main())
