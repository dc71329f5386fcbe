"""The record path: each record once, fitted to its column, deletions and changes."""
