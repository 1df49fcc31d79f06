"""Shared helpers of the inference tests: a tiny synthetic dataset and a tiny trained LOLNeRF.

Training here is a plain in-process loop on every pixel of a few 16x16 synthetic images (no
trainer, no checkpoints), so the inversion / render / evaluate tests do not depend on the trainer
app; tests that need a run directory write one with `save_run`.
"""

import functools
import pathlib
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfglo.data import dataset_dir
from tfglo.data.synthetic import heads as synthetic
from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import benchmarks, latents
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import model as lolnerf
from tfglo.nerf import config as config_lib

IMAGE_SIZE = 16


def write_synthetic(path, num_objects=4, image_size=IMAGE_SIZE, seed=0, eval_views=2):
    """Writes a synthetic dataset directory and returns its path."""
    cfg = synthetic.SyntheticConfig(
        num_objects=num_objects, image_size=image_size, seed=seed, eval_views_per_object=eval_views
    )
    with dataset_dir.DatasetWriter(path, overwrite=True) as writer:
        for record in synthetic.generate(cfg):
            writer.write(record)
        writer.metadata.update(synthetic.dataset_metadata(cfg))
    return pathlib.Path(path)


def tiny_model_config(num_latents: int) -> model_config_lib.ModelConfig:
    return model_config_lib.ModelConfig(
        num_latents=num_latents,
        latent_dim=8,
        latent_init_std=0.01,
        foreground=config_lib.ForegroundConfig(width=48, depth=3, skip_layer=0, num_octaves=4),
        background=config_lib.BackgroundConfig(width=16, depth=1, num_octaves=2),
        render=config_lib.RenderConfig(num_coarse=24, num_fine=8, chunk_size=512),
    )


def train_views(path) -> list:
    return [r for r in dataset_dir.iterate_records(path) if r.split == "train"]


def ray_batch(records) -> dict:
    """Every pixel of the records as one flat ray batch."""
    origins, directions, rgb, mask, ids = [], [], [], [], []
    for r in records:
        cam = camera_lib.make_camera(r.intrinsics, r.world_to_camera)
        o, d = camera_lib.image_rays(cam, r.height, r.width)
        origins.append(tf.reshape(o, [-1, 3]))
        directions.append(tf.reshape(d, [-1, 3]))
        rgb.append(r.image.reshape(-1, 3).astype(np.float32) / 255.0)
        mask.append(r.mask.reshape(-1).astype(np.float32) / 255.0)
        ids.append(np.full(r.height * r.width, r.latent_id, np.int64))
    return {
        "origins": tf.concat(origins, 0),
        "directions": tf.concat(directions, 0),
        "rgb": tf.constant(np.concatenate(rgb)),
        "mask": tf.constant(np.concatenate(mask)),
        "latent_id": tf.constant(np.concatenate(ids)),
    }


def train_tiny(records, num_steps=300, seed=0):
    """Trains a tiny LOLNeRF on every pixel of `records` each step. Returns (model, last terms)."""
    keras.utils.set_random_seed(seed)
    num_latents = max(r.latent_id for r in records) + 1
    model = lolnerf.LOLNeRF(tiny_model_config(num_latents))
    model.build_all()
    step = benchmarks.make_train_step(
        model,
        config_lib.LossConfig(mask_weight=0.1, hard_surface_weight=0.0),
        keras.optimizers.Adam(5e-3),
        latents.LazyAdam(2e-2),
        jit_compile=False,
    )
    batch = ray_batch(records)
    terms = {}
    for i in range(num_steps):
        _, terms = step(batch, tf.constant([seed, i], tf.int32))
    return model, {k: float(v) for k, v in terms.items()}


@functools.cache
def trained(num_steps=300):
    """(dataset path, trained model) shared by the tests of one process."""
    directory = pathlib.Path(tempfile.mkdtemp(prefix="tfglo_infer_"))
    path = write_synthetic(directory / "data")
    model, _ = train_tiny(train_views(path), num_steps=num_steps)
    return path, model


def save_run(model, dataset_path, path, step=300, with_checkpoint=True, metadata=None):
    """Writes a run directory around `model` with the trainer's own code; returns its path.

    config.json via `run_dir.make_config` / `write_config`, the checkpoint via a
    `tf.train.CheckpointManager` under `trainer.checkpoint_dir`, as the trainer writes them.
    `metadata` is the training data's dataset.json (default: read from `dataset_path`; pass it
    when `dataset_path` does not exist).
    """
    from tfglo.data import pipeline
    from tfglo.engine import run_dir, trainer

    path = pathlib.Path(path)
    configs = {
        "model": model.config,
        "loss": config_lib.LossConfig(),
        "train": trainer.TrainConfig(),
        "data": pipeline.RayBatchConfig(),
    }
    values = run_dir.make_config(
        "lolnerf",
        configs,
        str(dataset_path),
        dataset_dir.read_metadata(dataset_path) if metadata is None else metadata,
    )
    run_dir.write_config(path, values)
    if with_checkpoint:
        counter = tf.Variable(step, dtype=tf.int64, trainable=False, name="step")
        checkpoint = tf.train.Checkpoint(model=model, step=counter)
        tf.train.CheckpointManager(checkpoint, str(trainer.checkpoint_dir(path)), 1).save(
            checkpoint_number=step
        )
    return path


def run_app(module, argv):
    """Runs an app module's `main` with a private FlagValues (no global flag state)."""
    from absl import flags

    flag_values = flags.FlagValues()
    module.define_flags(flag_values)
    flag_values([module.__name__, *argv])
    return module.main([], flag_values)


class TrainedRunTestCase(parameterized.TestCase):
    """Base of the app tests: a tiny trained model saved as a run directory.

    Class attributes: `path` (the synthetic dataset), `model`, `run_dir` (a run directory written
    by `save_run`, removed after the class); per test, `out` is a fresh empty directory.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.path, cls.model = trained()
        cls.run_tmp = tempfile.TemporaryDirectory()
        cls.run_dir = save_run(cls.model, cls.path, f"{cls.run_tmp.name}/run")

    @classmethod
    def tearDownClass(cls):
        cls.run_tmp.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.out = pathlib.Path(tmp.name)
