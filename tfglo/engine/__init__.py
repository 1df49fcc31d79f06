"""The generic engine: the model-family interface and registry, trainer, run directory, export
machinery for TF Serving, inversion, metrics, baselines, evaluation and view rendering. A model
family plugs in (`engine.family.ModelFamily`); the engine knows no family by name."""
