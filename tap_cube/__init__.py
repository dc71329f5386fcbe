"""tap-cube: a Singer tap for the Headshed Cube REST API."""
