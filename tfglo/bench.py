"""`python -m tfglo.bench`: runs the benchmarks and prints one `name key=value ...` line each.

Every benchmark is a function `benchmark_<name>(peak_gflops, **sizes)` that prints its lines with
`tfglo.utils.benchmarking.report`: the data benchmarks beside the data code, the model benchmarks
in their family's `benchmarks` module (never in the model modules themselves). The matmul peak is
measured once, first, in this process, so every ratio is against the same peak.

`--quick` (or `TFGLO_BENCH_QUICK=1`) runs every benchmark at a tiny size (`QUICK`: a small model,
a few images, short timings): seconds, not minutes, so the test suite runs them all; its numbers
only show that each benchmark works.

A benchmark that raises prints `<name> error="<type>: <message>"` (and its traceback on stderr);
the others still run, and the app exits with status 1 naming the failed ones. A benchmark may
still report `skipped=<reason>` for what is missing on purpose (e.g. no face photos beside the
checkout); that is not a failure.
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import importlib
import json
import os
import sys
import traceback
from typing import Any

from absl import app, flags

from tfglo.utils import benchmarking

# name -> "module:function". Each function takes the matmul peak (GFLOP/s) as its argument, and
# the keyword arguments of its `QUICK` entry (every entry has one: tests/test_bench.py).
BENCHMARKS = {
    "train_step": "tfglo.lolnerf.benchmarks:benchmark_train_step",
    "synthetic": "tfglo.data.synthetic.heads:benchmark_synthetic",
    "synthetic_cars": "tfglo.data.synthetic.cars:benchmark_cars",
    "synthetic_shapes": "tfglo.data.synthetic.shapes:benchmark_shapes",
    "pipeline": "tfglo.lolnerf.benchmarks:benchmark_pipeline",
    "mesh": "tfglo.nerf.mesh_extraction:benchmark_mesh",
    "prepare_photos": "tfglo.data.photo_import:benchmark_prepare_photos",
    "render": "tfglo.lolnerf.benchmarks:benchmark_render",
    "serving": "tfglo.lolnerf.benchmarks:benchmark_serving",
    "nerf_vae_train_step": "tfglo.nerf_vae.benchmarks:benchmark_train_step",
}

QUICK_ENV = "TFGLO_BENCH_QUICK"
# The matmul peak of a quick run: (size, min_seconds).
QUICK_PEAK = (256, 0.05)


def _tiny_model_config():
    """A LOLNeRF small enough to build, trace and run in a second or two on one CPU core."""
    from tfglo.lolnerf import config as model_config_lib
    from tfglo.nerf import config as config_lib

    return model_config_lib.ModelConfig(
        num_latents=8,
        latent_dim=8,
        foreground=config_lib.ForegroundConfig(width=16, depth=2, skip_layer=1, num_octaves=2),
        background=config_lib.BackgroundConfig(width=8, depth=1, num_octaves=2),
        render=config_lib.RenderConfig(num_coarse=4, num_fine=4, chunk_size=256),
    )


def _quick_pipeline_config():
    from tfglo.data import pipeline

    return pipeline.RayBatchConfig(images_per_batch=4, rays_per_image=16, shuffle_buffer=8)


def _nerf_vae_smoke_flagfile():
    """flags/nerf_vae_smoke.cfg beside the package: the smallest NeRF-VAE that trains."""
    import pathlib

    return pathlib.Path(__file__).resolve().parent.parent / "flags" / "nerf_vae_smoke.cfg"


# name -> keyword arguments (values or zero-argument factories) of a quick run.
QUICK: dict[str, dict[str, Any]] = {
    "train_step": dict(
        ray_counts=(32,),
        jit_options=(False,),
        min_seconds=0.05,
        model_config=_tiny_model_config,
        peak_size=QUICK_PEAK[0],
        peak_seconds=QUICK_PEAK[1],
    ),
    "synthetic": dict(num_objects=2, image_size=16),
    "synthetic_cars": dict(num_objects=2, image_size=16),
    "synthetic_shapes": dict(num_objects=1, image_size=16),
    "pipeline": dict(
        num_images=8,
        image_size=16,
        config=_quick_pipeline_config,
        model_config=_tiny_model_config,
        min_seconds=0.05,
    ),
    "mesh": dict(resolution=16),
    "prepare_photos": dict(max_photos=3),
    # No demo run in a quick run (it reports skipped=): the tiny model, exact and accelerated.
    "render": dict(
        sizes=(8,),
        batches=(1, 2),
        model_config=_tiny_model_config,
        demo_run="",
        max_brute_seconds=None,
    ),
    "serving": dict(model_config=_tiny_model_config, sizes=(8,), batches=(1,), chunk_size=64),
    "nerf_vae_train_step": dict(flagfile=_nerf_vae_smoke_flagfile, min_seconds=0.05),
}

_ONLY = flags.DEFINE_list("only", None, f"Benchmarks to run (default all): {sorted(BENCHMARKS)}.")
_QUICK = flags.DEFINE_bool(
    "quick",
    False,
    f"Run every benchmark at a tiny size (a smoke test; also ${QUICK_ENV}=1).",
)


def _resolve(target: str):
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def quick_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments of `name`'s quick run (factories called)."""
    return {k: v() if callable(v) else v for k, v in QUICK.get(name, {}).items()}


def run_benchmarks(names: list[str], quick: bool = False) -> list[str]:
    """Runs benchmarks by name (after the matmul peak); returns the names of those that failed.

    A failure (an exception while importing or running one) prints `<name> error="..."` on
    stdout and the traceback on stderr; the remaining benchmarks still run.
    """
    size, seconds = QUICK_PEAK if quick else (2048, 1.5)
    peak = benchmarking.matmul_peak_gflops(size, min_seconds=seconds)
    benchmarking.report("matmul_peak", gflops=peak)
    failed = []
    for name in names:
        try:
            function = _resolve(BENCHMARKS[name])
            function(peak, **(quick_kwargs(name) if quick else {}))
        except Exception as e:  # noqa: BLE001 - one failing benchmark must not hide the others
            failed.append(name)
            message = f"{type(e).__name__}: {e}".strip()
            benchmarking.report(name, error=json.dumps(message.splitlines()[0][:300]))
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
    return failed


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    names = _ONLY.value or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise app.UsageError(f"unknown benchmarks {unknown}; choose from {sorted(BENCHMARKS)}")
    quick = _QUICK.value or os.environ.get(QUICK_ENV, "") not in ("", "0")
    failed = run_benchmarks(names, quick)
    if failed:
        print(
            f"bench: {len(failed)} of {len(names)} benchmarks failed: {', '.join(failed)}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
