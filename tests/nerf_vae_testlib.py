"""Test helpers for NeRF-VAE: small shapes datasets, smoke-size configs, a trained tiny run."""

import pathlib

import keras

from tfglo.data import dataset_dir
from tfglo.data.synthetic import shapes
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import trainer

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SMOKE_FLAGFILE = REPO_ROOT / "flags" / "nerf_vae_smoke.cfg"


def write_shapes(path, num_objects=6, image_size=16, train_views=3, eval_views=1, seed=0):
    """A shapes dataset directory written in-process (constant grey background)."""
    config = shapes.ShapesConfig(
        num_objects=num_objects,
        image_size=image_size,
        seed=seed,
        train_views_per_object=train_views,
        eval_views_per_object=eval_views,
    )
    with dataset_dir.DatasetWriter(path) as writer:
        writer.metadata.update(shapes.dataset_metadata(config))
        for record in shapes.generate(config):
            writer.write(record)
    return str(path)


def smoke_configs(dataset, **overrides):
    """The four sections of flags/nerf_vae_smoke.cfg (+ flag overrides) for `dataset`."""
    from tfglo.nerf_vae import family

    values = family.flagfile_values(SMOKE_FLAGFILE, **overrides)
    return family.FAMILY.configs_from_flags(values, dataset_dir.read_metadata(dataset))


def make_trainer(dataset, run, configs, strategy=None):
    """A `Trainer` of NeRF-VAE with config.json written, as the train app does."""
    from tfglo.nerf_vae import family

    metadata = dataset_dir.read_metadata(dataset)
    family.FAMILY.check_dataset(configs, metadata)
    run_dir_lib.check_resume(run, family.FAMILY, configs)
    run_dir_lib.write_config(
        run, run_dir_lib.make_config(family.FAMILY, configs, str(dataset), metadata, {})
    )
    keras.utils.set_random_seed(configs["train"].seed)
    return trainer.Trainer(
        family.FAMILY, configs, run, dataset, strategy=strategy, log=lambda line: None
    )
