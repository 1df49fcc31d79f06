"""LOLNeRF's benchmarks: a training step, whole-image rendering (exact against accelerated), the
input pipeline against a training step, and the exported `render` signature. `python -m
tfglo.bench` runs them (its table names these functions); each prints `name key=value ...` lines
with a ratio to the matmul peak of the same run (`tfglo.utils.benchmarking`).

Also the helpers they share with the tests: `synthetic_ray_batch` (a random training batch) and
`make_train_step` (one compiled single-device training step, without the engine's trainer).
"""

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfglo.data import dataset_dir, pipeline
from tfglo.data.synthetic import heads as synthetic
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import latents, serving
from tfglo.lolnerf import model as model_lib
from tfglo.nerf import config as config_lib
from tfglo.nerf import losses, render_benchmark
from tfglo.utils import benchmarking


def synthetic_ray_batch(num_rays: int, num_latents: int, seed: int = 0) -> dict:
    """A random training batch: rays from 4 units away through the unit sphere, random targets."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(num_rays, 3))
    origins *= 4.0 / np.linalg.norm(origins, axis=-1, keepdims=True)
    targets = rng.uniform(-0.5, 0.5, (num_rays, 3))
    directions = targets - origins
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return {
        "origins": tf.constant(origins, tf.float32),
        "directions": tf.constant(directions, tf.float32),
        "latent_id": tf.constant(rng.integers(0, num_latents, num_rays), tf.int64),
        "rgb": tf.constant(rng.uniform(size=(num_rays, 3)), tf.float32),
        "mask": tf.constant(rng.uniform(size=num_rays) > 0.5, tf.float32),
    }


def make_train_step(
    model: model_lib.LOLNeRF,
    loss_config: config_lib.LossConfig,
    network_optimizer: keras.optimizers.Optimizer,
    latent_optimizer: keras.optimizers.Optimizer,
    jit_compile: bool,
):
    """A compiled `step(batch, seed) -> (loss, terms)`: forward, backward, both optimisers."""
    network_variables = model.network_variables
    latent_variables = model.latent_variables
    network_optimizer.build(network_variables)
    latent_optimizer.build(latent_variables)

    def step(batch, seed):
        with tf.GradientTape() as tape:
            render = model(batch, training=True, seed=seed)
            loss, terms = losses.total_loss(render, batch, loss_config)
        grads = tape.gradient(loss, network_variables + latent_variables)
        count = len(network_variables)
        network_optimizer.apply_gradients(zip(grads[:count], network_variables))
        latent_optimizer.apply_gradients(zip(grads[count:], latent_variables))
        return loss, terms

    return tf.function(step, jit_compile=jit_compile)


def benchmark_train_step(
    peak_gflops: float,
    ray_counts=(1024,),
    jit_options=(False, True),
    min_seconds: float = 8.0,
    model_config: model_config_lib.ModelConfig | None = None,
    peak_size: int = 2048,
    peak_seconds: float = 1.0,
    precisions=("float32", "mixed_bfloat16"),
) -> None:
    """One training step of the default-size model, with and without XLA, in each field
    precision (`RenderConfig.precision`); one line per variant.

    Default `ModelConfig` fields (8 x 256 foreground, 64 coarse + 64 fine samples, 4 x 128
    background), a 64-row latent table, default loss weights; Adam on the fields and LazyAdam on
    the table. FLOPs per `train_step_flops`; ratio = achieved FLOP/s / `peak_gflops`.

    1024 rays: larger batches measured no more efficient (ratio flat from 512 to 4096 rays) while
    peak memory grows ~4.5 MB per ray (~19 GB at 4096 rays, both variants in one process).

    The machines here are shared, so each line also carries `nearby_peak_gflops`, the matmul
    peak re-measured just before and after that variant (mean; `peak_size`, `peak_seconds`), and
    `nearby_ratio` against it. `model_config` (default: `ModelConfig(num_latents=64)`) and the
    other sizes shrink it (`python -m tfglo.bench --quick`).

    mixed_bfloat16 runs the field matmuls in bfloat16 (float32 variables and compositing); its
    FLOPs are counted as float32's, so its ratio says how much faster (or slower, on a CPU
    without bfloat16 units: no `avx512_bf16` / `amx` in /proc/cpuinfo) the same step runs.
    """
    base_config = model_config or model_config_lib.ModelConfig(num_latents=64)
    for precision in precisions:
        render = dataclasses.replace(base_config.render, precision=precision)
        model_config = dataclasses.replace(base_config, render=render)
        _benchmark_train_step_precision(
            peak_gflops, model_config, ray_counts, jit_options, min_seconds, peak_size, peak_seconds
        )


def _benchmark_train_step_precision(
    peak_gflops, model_config, ray_counts, jit_options, min_seconds, peak_size, peak_seconds
) -> None:
    model = model_lib.LOLNeRF(model_config)
    model.build_all()
    for num_rays in ray_counts:
        batch = synthetic_ray_batch(num_rays, model_config.num_latents)
        flops = model_lib.train_step_flops(model, num_rays)
        samples = num_rays * (model_config.render.num_coarse + model_config.render.num_fine)
        for jit in jit_options:
            step = make_train_step(
                model,
                config_lib.LossConfig(),
                keras.optimizers.Adam(5e-4),
                latents.LazyAdam(1e-3),
                jit_compile=jit,
            )
            seed = tf.constant([1, 2], tf.int32)
            step(batch, seed)[0].numpy()  # Trace and compile outside the timing.
            before = benchmarking.matmul_peak_gflops(peak_size, min_seconds=peak_seconds)
            seconds = benchmarking.time_call(
                lambda step=step, batch=batch, seed=seed: step(batch, seed)[0].numpy(),
                min_seconds=min_seconds,
            )
            after = benchmarking.matmul_peak_gflops(peak_size, min_seconds=peak_seconds)
            nearby_peak = 0.5 * (before + after)
            gflops = flops / seconds / 1e9
            benchmarking.report(
                "train_step",
                precision=model_config.render.precision,
                xla=int(jit),
                rays=num_rays,
                seconds=seconds,
                samples_per_s=samples / seconds,
                rays_per_s=num_rays / seconds,
                gflops=gflops,
                matmul_peak_gflops=peak_gflops,
                ratio=gflops / peak_gflops,
                nearby_peak_gflops=nearby_peak,
                nearby_ratio=gflops / nearby_peak,
            )


# Where `benchmark_render` finds the trained demo model: this environment variable, else the run
# `make demo` writes (relative to the working directory).
DEMO_RUN_ENV = "TFGLO_BENCH_DEMO_RUN"
DEFAULT_DEMO_RUN = "outputs/demo/runs/full"


def _render_views_data(path: str, num_objects: int) -> str:
    """A small synthetic data set (held-out views with exact targets at any size) at `path`."""
    config = synthetic.SyntheticConfig(
        num_objects=num_objects, image_size=16, eval_views_per_object=4
    )
    with dataset_dir.DatasetWriter(path) as writer:
        for record in synthetic.generate(config):
            writer.write(record)
        writer.metadata.update(synthetic.dataset_metadata(config))
    return path


def benchmark_render(
    peak_gflops: float,
    sizes=(64, 256),
    batches=(1, 8),
    model_config: model_config_lib.ModelConfig | None = None,
    demo_run: str | None = None,
    max_brute_seconds: float | None = 600.0,
) -> list[str]:
    """Whole-image render time, exact brute force against accelerated, one line per case:

        render model=demo size=256 batch=1 brute_s=.. fast_s=.. samples_per_ray=.. speedup=..
            psnr_diff=.. ratio=.. ...

    (keys: `tfglo.nerf.render_benchmark.benchmark_render_speed`). Two models:
    - "demo": the trained demo model (`demo_run`, default $TFGLO_BENCH_DEMO_RUN, else
      `outputs/demo/runs/full`, what `make demo` trains) with the package's default accelerated
      settings, on held-out views of its synthetic training data re-rendered at each size (its
      own latents; the ground truth gives psnr_diff). Without a loadable run the line says
      `skipped=`.
    - "default": a freshly initialised default-size LOLNeRF (`model_config`, default
      `ModelConfig()`: 8 x 256 field, 64 + 64 samples), trained=0: its density is a thin fog
      everywhere, so the grid is full and no ray terminates: the accelerated renderer's worst
      case. Views: held-out views of a small synthetic data set (targets for psnr_diff).
    A 256 x 256 exact view of the default model takes minutes on 2 CPU cores: the exact
    renderer is timed on as many views of a case as fit in `max_brute_seconds` (brute_views).
    """
    from tfglo.engine import run_dir as run_dir_lib  # the trainer's module: only when run

    lines = []
    demo_run = demo_run if demo_run is not None else os.environ.get(DEMO_RUN_ENV, DEFAULT_DEMO_RUN)
    common = dict(
        sizes=sizes, batches=batches, peak_gflops=peak_gflops, max_brute_seconds=max_brute_seconds
    )
    # The demo's weights with the package's default accelerated settings (a run records the
    # settings of its tfglo version): the benchmark measures today's renderer.
    defaults = config_lib.RenderConfig()
    settings = {name: getattr(defaults, name) for name in config_lib.INFERENCE_RENDER_FIELDS}
    try:
        run = run_dir_lib.load_run(demo_run, render_overrides=settings) if demo_run else None
    except run_dir_lib.RunDirError as e:
        run = None
        reason = str(e).splitlines()[0]
    if run is None:
        lines.append(
            benchmarking.report(
                "render",
                model="demo",
                skipped=json.dumps(
                    f"no trained demo run ({reason if demo_run else 'none given'}): make demo, "
                    f"or {DEMO_RUN_ENV}=RUN_DIR"
                ),
            )
        )
    else:
        table = run.model.latent_table.embeddings.numpy()
        try:
            views_fn = render_benchmark.synthetic_views(run.dataset_dir, table)
        except (ValueError, OSError, dataset_dir.DatasetError):
            views_fn = render_benchmark.orbit_views(table[0])  # no targets: no psnr_diff
        lines += render_benchmark.benchmark_render_speed(
            run.model, "demo", views_fn, trained=1, step=run.step, **common
        )
    num_objects = max(2, -(-max(batches) // 4))  # 4 held-out views per object
    model_config = model_config or model_config_lib.ModelConfig()
    model_config = dataclasses.replace(
        model_config, num_latents=max(model_config.num_latents, num_objects)
    )
    model = model_lib.LOLNeRF(model_config)
    model.build_all()
    with tempfile.TemporaryDirectory(prefix="tfglo-bench-render-") as tmp:
        data = _render_views_data(os.path.join(tmp, "data"), num_objects)
        table = model.latent_table.embeddings.numpy()
        views_fn = render_benchmark.synthetic_views(data, table)
        lines += render_benchmark.benchmark_render_speed(
            model, "default", views_fn, trained=0, **common
        )
    return lines


def write_benchmark_dataset(path: str, num_images: int, image_size: int) -> None:
    """Writes `num_images` synthetic heads of `image_size` pixels (no eval views) to `path`."""
    config = synthetic.SyntheticConfig(
        num_objects=num_images, image_size=image_size, eval_views_per_object=0
    )
    with dataset_dir.DatasetWriter(path) as writer:
        for record in synthetic.generate(config):
            writer.write(record)
        writer.metadata.update(synthetic.dataset_metadata(config))


def train_step_rays_per_second(
    num_rays: int,
    model_config: model_config_lib.ModelConfig | None = None,
    min_seconds: float = 3.0,
) -> float:
    """Rays/s of one LOLNeRF training step (no XLA; default `ModelConfig(num_latents=64)`)."""
    model_config = model_config or model_config_lib.ModelConfig(num_latents=64)
    model = model_lib.LOLNeRF(model_config)
    model.build_all()
    step = make_train_step(
        model,
        config_lib.LossConfig(),
        keras.optimizers.Adam(5e-4),
        latents.LazyAdam(1e-3),
        jit_compile=False,
    )
    batch = synthetic_ray_batch(num_rays, model_config.num_latents)
    seed = tf.constant([1, 2], tf.int32)
    seconds = benchmarking.time_call(lambda: step(batch, seed)[0].numpy(), min_seconds=min_seconds)
    return num_rays / seconds


def benchmark_pipeline(
    peak_gflops: float,
    num_images: int = 256,
    image_size: int = 64,
    config: pipeline.RayBatchConfig | None = None,
    model_config: model_config_lib.ModelConfig | None = None,
    min_seconds: float = 3.0,
) -> None:
    """Prints the rays/s the training pipeline delivers (cached and streaming), the rays/s of one
    default LOLNeRF training step and the ratio (target >= 5).

    The data set: `num_images` synthetic heads at `image_size` in a temporary directory; the
    default `RayBatchConfig` (32 images x 64 rays = 2048 rays per batch); each rate is measured
    over `min_seconds`. The arguments shrink it (`python -m tfglo.bench --quick`).
    """
    del peak_gflops  # input pipelines are bound by memory and the runtime, not matmul FLOPs
    config = config or pipeline.RayBatchConfig()
    num_rays = config.images_per_batch * config.rays_per_image
    root = tempfile.mkdtemp(prefix="tfglo-bench-pipeline-")
    try:
        path = os.path.join(root, "data")
        write_benchmark_dataset(path, num_images=num_images, image_size=image_size)
        rates = {}
        for cache in (True, False):
            dataset = pipeline.train_dataset(path, dataclasses.replace(config, cache=cache))
            rates[cache] = pipeline.measure_rays_per_second(dataset, num_rays, min_seconds)
            benchmarking.report(
                "pipeline",
                cache=int(cache),
                rays_per_batch=num_rays,
                image_size=image_size,
                rays_per_s=rates[cache],
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    step_rate = train_step_rays_per_second(num_rays, model_config, min_seconds)
    benchmarking.report(
        "pipeline_vs_train_step",
        rays_per_batch=num_rays,
        pipeline_rays_per_s=rates[True],
        streaming_rays_per_s=rates[False],
        train_step_rays_per_s=step_rate,
        ratio=rates[True] / step_rate,
        streaming_ratio=rates[False] / step_rate,
        target_ratio=5,
        meets_target=rates[True] / step_rate >= 5,
    )


def benchmark_serving(
    peak_gflops: float,
    model_config=None,
    sizes=(64, 256),
    batches=(1, 8),
    chunk_size: int = 4096,
    max_case_seconds: float = 180.0,
) -> list[str]:
    """Render latency and peak memory of the exported `render` signature.

    Exports a freshly initialised LOLNeRF (`model_config`, default `ModelConfig()`: the paper's
    8 x 256 foreground, 64 + 64 samples; the weights do not change the cost) and measures each
    (size, batch) case in a fresh subprocess, so each peak RSS is that case's alone. Cases run
    from the cheapest; a case whose predicted time (from the rays/s measured so far) exceeds
    `max_case_seconds` is reported as skipped (256 x 256 x 8 takes ~20 minutes on 2 CPU cores).

    Prints one `serving` line per case: latency_ms, rays_per_s, forward GFLOP/s of the fields
    (as `benchmark_render`) and its ratio to the matmul peak, peak_rss_mb (after rendering) and
    base_rss_mb (after loading the export and a warm-up call on a 4 x 4 image).
    """
    model_config = model_config or model_config_lib.ModelConfig()
    model = model_lib.LOLNeRF(model_config)
    model.build_all()
    # Forward FLOPs per ray: the forward third of a training step's (as benchmark_render).
    flops_per_ray = model_lib.train_step_flops(model, 1) / 3.0
    cases = sorted(
        ((size, batch) for size in sizes for batch in batches), key=lambda c: c[0] ** 2 * c[1]
    )
    lines = []
    best_rays_per_s = None
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = pathlib.Path(tmp) / "1"
        serving.export_model(model, export_dir, serving.ExportConfig(chunk_size=chunk_size))
        for size, batch in cases:
            rays = batch * size * size
            if best_rays_per_s and rays / best_rays_per_s > max_case_seconds:
                lines.append(
                    benchmarking.report(
                        "serving",
                        size=size,
                        batch=batch,
                        skipped=f"predicted_{rays / best_rays_per_s:.0f}s>{max_case_seconds:g}s",
                    )
                )
                continue
            repeats = 3 if rays <= 8192 else 1
            result = serving.measure_render(export_dir, size, batch, repeats=repeats)
            rays_per_s = rays / result["seconds"]
            best_rays_per_s = max(best_rays_per_s or 0.0, rays_per_s)
            gflops = rays_per_s * flops_per_ray / 1e9
            lines.append(
                benchmarking.report(
                    "serving",
                    size=size,
                    batch=batch,
                    chunk=chunk_size,
                    latency_ms=1e3 * result["seconds"],
                    warmup_ms=1e3 * result["warmup_s"],
                    rays_per_s=rays_per_s,
                    gflops=gflops,
                    ratio=gflops / peak_gflops,
                    peak_rss_mb=result["peak_rss_kb"] / 1024.0,
                    base_rss_mb=result["load_rss_kb"] / 1024.0,
                )
            )
    return lines
