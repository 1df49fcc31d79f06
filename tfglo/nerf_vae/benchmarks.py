"""NeRF-VAE's benchmark: one training step of the demo configuration against the matmul peak.

`python -m tfglo.bench --only=nerf_vae_train_step` prints one `nerf_vae_train_step key=value ...`
line: seconds per step, rays/s, achieved GFLOP/s (encoder convolutions + field MLPs, forward +
backward, `model.train_step_flops`) and its ratio to the matmul peak of the same run (also against
the peak re-measured around the timing, `nearby_ratio`, as the machines here are shared).
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from tfglo.geometry import camera
from tfglo.nerf_vae import family
from tfglo.nerf_vae import model as model_lib
from tfglo.utils import benchmarking

DEMO_FLAGFILE = (
    pathlib.Path(__file__).resolve().parent.parent.parent / "flags" / "nerf_vae_demo.cfg"
)
# dataset.json of the demo's data as far as the configs read it (32 x 32 shapes, grey background).
DEMO_METADATA = {"scene_radius": 1.0, "constant_background": [0.85, 0.85, 0.85]}


def synthetic_scene_batch(configs, target_size: int = 32, seed: int = 0) -> dict:
    """A random scene batch of the configs' shape: cameras 4 units away, random pixels."""
    data = configs["data"]
    rng = np.random.default_rng(seed)
    scenes, views, rays = data.scenes_per_batch, data.context_views, data.target_rays
    size = configs["model"].encoder.image_size

    def cameras(count):
        eyes = rng.normal(size=(count, 3))
        eyes = 4.0 * eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
        return camera.look_at(eyes.astype(np.float32)).numpy()

    origins = rng.normal(size=(scenes, rays, 3))
    origins = 4.0 * origins / np.linalg.norm(origins, axis=-1, keepdims=True)
    directions = rng.uniform(-0.5, 0.5, (scenes, rays, 3)) - origins
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    intrinsics = np.tile([2.0 * size, 2.0 * size, size / 2, size / 2], (scenes, views, 1))
    batch = {
        "context_images": rng.uniform(size=(scenes, views, size, size, 3)),
        "context_intrinsics": intrinsics,
        "context_world_to_camera": cameras(scenes * views).reshape(scenes, views, 3, 4),
        "object_id": np.arange(scenes),
        "origins": origins,
        "directions": directions,
        "rgb": rng.uniform(size=(scenes, rays, 3)),
        "mask": (rng.uniform(size=(scenes, rays)) > 0.5).astype(np.float32),
        "target_pixels": np.full([scenes], float(data.target_views * target_size**2)),
    }
    return {
        k: tf.constant(v, tf.int64 if k == "object_id" else tf.float32) for k, v in batch.items()
    }


def make_train_step(configs, model, jit_compile: bool):
    """A compiled single-device `step(batch, seed) -> loss`: forward, backward, both optimisers."""
    groups = family.FAMILY.variable_groups(model, configs)
    optimizers = {}
    for name, group in groups.items():
        optimizers[name] = group.optimizer.make(f"{name}_optimizer")
        optimizers[name].build(list(group.variables))

    def step(batch, seed):
        variables = [v for g in groups.values() for v in g.variables]
        with tf.GradientTape() as tape:
            loss, _, _ = family.FAMILY.train_loss(model, batch, configs, seed)
        gradients = tape.gradient(loss, variables)
        start = 0
        for name, group in groups.items():
            end = start + len(group.variables)
            optimizers[name].apply_gradients(zip(gradients[start:end], group.variables))
            start = end
        return loss

    return tf.function(step, jit_compile=jit_compile)


def benchmark_train_step(
    peak_gflops: float, flagfile=DEMO_FLAGFILE, jit_options=(False,), min_seconds: float = 8.0
) -> None:
    """One training step of NeRF-VAE at the demo configuration's sizes, one line per variant.

    The demo flagfile's model, objective and batch (scenes x context views x target rays), on a
    random scene batch; FLOPs per `model.train_step_flops`; ratio = achieved FLOP/s / peak.
    """
    configs = family.FAMILY.configs_from_flags(family.flagfile_values(flagfile), DEMO_METADATA)
    keras.utils.set_random_seed(0)
    model = family.FAMILY.build_model(configs)
    data = configs["data"]
    batch = synthetic_scene_batch(configs)
    flops = model_lib.train_step_flops(
        model, data.scenes_per_batch, data.context_views, data.target_rays
    )
    rays = data.scenes_per_batch * data.target_rays
    for jit in jit_options:
        step = make_train_step(configs, model, jit)
        seed = tf.constant([1, 2], tf.int32)
        step(batch, seed).numpy()  # Trace and compile outside the timing.
        before = benchmarking.matmul_peak_gflops(min_seconds=1.0)
        seconds = benchmarking.time_call(
            lambda step=step, seed=seed: step(batch, seed).numpy(), min_seconds=min_seconds
        )
        nearby_peak = 0.5 * (before + benchmarking.matmul_peak_gflops(min_seconds=1.0))
        gflops = flops / seconds / 1e9
        benchmarking.report(
            "nerf_vae_train_step",
            xla=int(jit),
            scenes=data.scenes_per_batch,
            context_views=data.context_views,
            rays=rays,
            seconds=seconds,
            rays_per_s=rays / seconds,
            gflop_per_step=flops / 1e9,
            gflops=gflops,
            matmul_peak_gflops=peak_gflops,
            ratio=gflops / peak_gflops,
            nearby_peak_gflops=nearby_peak,
            nearby_ratio=gflops / nearby_peak,
        )
