"""The streams: what each Cube list is, its partitions, schema and catalog."""
