"""`python -m tfglo.bench`: runs the benchmarks and prints one `name key=value ...` line each.

Every benchmark is a function `benchmark_<name>(peak_gflops)` that prints its lines with
`tfglo.utils.benchmarking.report`: the data benchmarks beside the data code, the model benchmarks
in their family's `benchmarks` module (never in the model modules themselves). The matmul peak is
measured once, first, in this process, so every ratio is against the same peak.
"""

import importlib

from absl import app, flags

from tfglo.utils import benchmarking

# name -> "module:function". Each function takes the matmul peak (GFLOP/s) as its argument.
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

_ONLY = flags.DEFINE_list("only", None, f"Benchmarks to run (default all): {sorted(BENCHMARKS)}.")


def _resolve(target: str):
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv):
    del argv
    names = _ONLY.value or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise app.UsageError(f"unknown benchmarks {unknown}; choose from {sorted(BENCHMARKS)}")
    peak = benchmarking.matmul_peak_gflops()
    benchmarking.report("matmul_peak", gflops=peak)
    for name in names:
        try:
            function = _resolve(BENCHMARKS[name])
        except (ImportError, AttributeError) as e:
            benchmarking.report(name, skipped=f"unavailable:{type(e).__name__}")
            continue
        function(peak)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
