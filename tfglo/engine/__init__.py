"""The generic engine: trainer, run directory, inversion, metrics, baselines, evaluation and view
rendering. A model family plugs in; the engine knows no family by name."""
