"""Small shared helpers: config dataclasses <-> dicts and flags, app glue, images, benchmarks."""
