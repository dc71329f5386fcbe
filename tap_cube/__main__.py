"""`python -m tap_cube`: the `tap-cube` command."""

from tap_cube.cli import main

main()
