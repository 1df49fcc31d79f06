"""GPU check: train-step time float32 vs mixed_bfloat16 (XLA off/on), and the render speed-up.

Run from the repository root on a machine with a GPU and TensorFlow (a few minutes):

    python tools/gpu_precision_check.py                      # train steps of the default model
    python tools/gpu_precision_check.py --run_dir=RUN [--dataset=DATA]   # + renders of RUN

Prints `name key=value ...` lines:
- `env`: TensorFlow version, the GPU, whether TF32 matmuls are on (TensorFlow's default on
  Ampere and later: "float32" then means TF32 tensor-core matmuls).
- `train_step precision=.. xla=.. rays=.. seconds=.. rays_per_s=.. speedup_vs_float32=..`: one
  training step (forward, backward, Adam) of the default-size LOLNeRF (8 x 256 foreground,
  64 + 64 samples per ray, 4 x 128 background) on a synthetic ray batch; speedup_vs_float32 is
  against float32 with the same XLA setting.
- `train_loss precision=.. xla=.. first=.. last=..`: the loss of the first and the last timed
  step (both precisions see the same batches: a sanity check that bfloat16 still trains).
- with --run_dir (a trained run, e.g. the demo's): `render ...` lines of
  `tfglo.nerf.render_benchmark` (exact vs accelerated, 64 and 256 pixels, batch 1 and 8) for each
  precision, and `render_precision psnr_vs_float32=..` (the mixed render against the float32
  one of the same weights). With --dataset (the run's synthetic data set) psnr_diff is against
  ground truth re-rendered at each size; without, the views are a yaw orbit of latent 0.
"""

import argparse
import dataclasses
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfglo.lolnerf import model as lolnerf  # noqa: E402
from tfglo.lolnerf.config import ModelConfig  # noqa: E402
from tfglo.nerf import render_benchmark  # noqa: E402
from tfglo.utils import benchmarking  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")


def with_precision(config: ModelConfig, precision: str) -> ModelConfig:
    return dataclasses.replace(
        config, render=dataclasses.replace(config.render, precision=precision)
    )


def ray_batch(num_rays: int, num_latents: int, seed: int) -> dict:
    """Rays from 4 units away through the unit sphere with random colour and mask targets."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(num_rays, 3))
    origins *= 4.0 / np.linalg.norm(origins, axis=-1, keepdims=True)
    directions = rng.uniform(-0.5, 0.5, (num_rays, 3)) - origins
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return {
        "origins": tf.constant(origins, tf.float32),
        "directions": tf.constant(directions, tf.float32),
        "latent_id": tf.constant(rng.integers(0, num_latents, num_rays), tf.int64),
        "rgb": tf.constant(rng.uniform(size=(num_rays, 3)), tf.float32),
        "mask": tf.constant(rng.uniform(size=num_rays) > 0.5, tf.float32),
    }


def make_step(model, jit_compile: bool):
    """Forward, backward and Adam on every trainable variable (colour + 0.1 x mask MSE)."""
    optimizer = keras.optimizers.Adam(5e-4)
    variables = model.trainable_variables
    optimizer.build(variables)

    def step(batch, seed):
        with tf.GradientTape() as tape:
            out = model(batch, training=True, seed=seed)
            loss = tf.reduce_mean(tf.square(out["rgb"] - batch["rgb"]))
            loss += 0.1 * tf.reduce_mean(tf.square(out["alpha"] - batch["mask"]))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return tf.function(step, jit_compile=jit_compile)


def train_steps(args) -> None:
    base = ModelConfig(num_latents=64)
    batches = [ray_batch(args.rays, base.num_latents, seed) for seed in range(4)]
    reference = {}
    for jit in (False, True):
        for precision in PRECISIONS:
            keras.utils.set_random_seed(0)
            model = lolnerf.LOLNeRF(with_precision(base, precision))
            model.build_all()
            step = make_step(model, jit)
            start = time.perf_counter()
            step(batches[0], tf.constant([0, 0])).numpy()  # trace / compile
            compile_s = time.perf_counter() - start
            for i in range(3):
                step(batches[i % 4], tf.constant([0, i])).numpy()
            losses = []
            start = time.perf_counter()
            for i in range(args.steps):
                loss = step(batches[i % 4], tf.constant([1, i]))
                if i in (0, args.steps - 1):
                    losses.append(float(loss.numpy()))
            loss.numpy()
            seconds = (time.perf_counter() - start) / args.steps
            if precision == "float32":
                reference[jit] = seconds
            benchmarking.report(
                "train_step",
                precision=precision,
                xla=int(jit),
                rays=args.rays,
                seconds=seconds,
                rays_per_s=args.rays / seconds,
                speedup_vs_float32=reference[jit] / seconds,
                compile_s=compile_s,
            )
            benchmarking.report(
                "train_loss", precision=precision, xla=int(jit), first=losses[0], last=losses[-1]
            )


def renders(args) -> None:
    from tfglo.engine import run_dir as run_dir_lib
    from tfglo.nerf.image_renderer import ImageRenderer

    run = run_dir_lib.load_run(args.run_dir)
    table = run.model.latent_table.embeddings.numpy()
    if args.dataset:
        views_fn = render_benchmark.synthetic_views(args.dataset, table)
    else:
        views_fn = render_benchmark.orbit_views(table[0], distance=args.distance)
    float32_view = None
    for precision in PRECISIONS:
        model = lolnerf.LOLNeRF(with_precision(run.model_config, precision))
        model.build_all()
        model.set_weights(run.model.get_weights())
        render_benchmark.benchmark_render_speed(
            model, f"{args.name}_{precision}", views_fn, sizes=args.sizes, batches=args.batches
        )
        view = views_fn(args.sizes[-1], 1)[0]
        rgb = ImageRenderer(model, accelerate=False)(
            view.latent, view.camera, args.sizes[-1], args.sizes[-1]
        )["rgb"].numpy()
        if float32_view is None:
            float32_view = rgb
        else:
            mse = float(np.mean((rgb - float32_view) ** 2))
            benchmarking.report(
                "render_precision",
                precision=precision,
                size=args.sizes[-1],
                psnr_vs_float32=-10.0 * np.log10(max(mse, 1e-12)),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rays", type=int, default=4096, help="rays per training step")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--run_dir", default="", help="a trained run for the render lines")
    parser.add_argument("--dataset", default="", help="its synthetic data set (targets)")
    parser.add_argument("--name", default="demo", help="model name in the render lines")
    parser.add_argument("--distance", type=float, default=4.5, help="orbit camera distance")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--skip_train", action="store_true", help="only the render lines")
    args = parser.parse_args()

    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    benchmarking.report(
        "env",
        tensorflow=tf.__version__,
        gpus=len(gpus),
        gpu=str(details.get("device_name", "none")).replace(" ", "_"),
        compute_capability=".".join(map(str, details.get("compute_capability", ()))) or "none",
        tf32=int(tf.config.experimental.tensor_float_32_execution_enabled()),
    )
    if not gpus:
        print("warning: no GPU visible; timings are CPU timings", flush=True)
    if not args.skip_train:
        train_steps(args)
    if args.run_dir:
        renders(args)


if __name__ == "__main__":
    main()
