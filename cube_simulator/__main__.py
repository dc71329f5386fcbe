"""``python -m cube_simulator``: serve a fake Cube API until SIGINT or SIGTERM."""

import sys

from cube_simulator import main

if __name__ == "__main__":
    sys.exit(main())
