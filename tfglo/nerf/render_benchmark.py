"""Whole-image render speed: the exact brute-force renderer against the accelerated one.

`benchmark_render_speed` renders the same views both ways with `ImageRenderer` (one line per image
size and batch of views):

    render model=demo size=256 batch=1 brute_s=.. fast_s=.. samples_per_ray=.. speedup=..
        psnr_diff=.. ...

brute_s / fast_s are seconds per view (the accelerated time includes building the occupancy grid
of every distinct latent of the batch, once: grid_s is that build alone); samples_per_ray is the
accelerated renderer's mean foreground evaluations per pixel (brute_samples_per_ray for the
exact one); psnr_diff is mean PSNR(exact render, target) - mean PSNR(accelerated render, target)
over the batch (positive: the accelerated render is worse), and psnr_vs_brute the mean PSNR of
the accelerated render against the exact one; ratio / brute_ratio / fast_ratio compare field
GFLOP/s with the run's matmul peak (`benchmark_render_speed`).

`synthetic_views` supplies views with exact targets at any size for a data set made by
`tfglo.prepare --source=synthetic`: its held-out cameras (rescaled to the requested size) and the
ground-truth images re-rendered at that size by the synthetic class itself.
"""

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from tfglo.data import dataset_dir
from tfglo.data.synthetic import heads
from tfglo.geometry import camera as camera_lib
from tfglo.nerf.image_renderer import ImageRenderer
from tfglo.utils import benchmarking


@dataclasses.dataclass
class View:
    """One view to render: latent `[D]`, an unbatched camera, optional target `[H, W, 3]`."""

    latent: np.ndarray
    camera: camera_lib.Camera
    target: np.ndarray | None = None


def _psnr(a, b) -> float:
    mse = float(np.mean((np.clip(a, 0.0, 1.0) - np.clip(b, 0.0, 1.0)) ** 2))
    return float("inf") if mse == 0.0 else -10.0 * np.log10(mse)


def _render(renderer: ImageRenderer, views: list[View], size: int) -> list[dict]:
    out = []
    for view in views:
        result = renderer(view.latent, view.camera, size, size)
        out.append({key: value.numpy() for key, value in result.items()})
    return out


def _timed_render(renderer: ImageRenderer, views: list[View], size: int):
    """(seconds, renders) of one pass over `views` (each case renders its views once: a
    256 x 256 brute-force view of the default model takes minutes on a small CPU)."""
    start = time.perf_counter()
    renders = _render(renderer, views, size)
    return time.perf_counter() - start, renders


def _timed_grids(renderer: ImageRenderer, latents) -> float:
    renderer.clear_grids()
    start = time.perf_counter()
    for latent in latents:
        renderer.grid(latent).numpy()
    return time.perf_counter() - start


def forward_flops_per_ray(model, samples_per_ray: float) -> float:
    """Field FLOPs of rendering one ray with `samples_per_ray` foreground evaluations.

    2 FLOPs per multiply-add: the foreground per sample (its per-ray latent rows once), the
    background once per ray; what the fields report (`multiply_adds`).
    """
    per_sample, per_ray = model.foreground.multiply_adds()
    flops = samples_per_ray * per_sample + per_ray
    if getattr(model, "background", None) is not None:
        flops += model.background.multiply_adds()
    return 2.0 * float(flops)


def benchmark_render_speed(
    model,
    name: str,
    views_fn: Callable[[int, int], list[View]],
    sizes=(64, 256),
    batches=(1, 8),
    peak_gflops: float | None = None,
    max_brute_seconds: float | None = None,
    **extra,
) -> list[str]:
    """Exact vs accelerated whole-image renders of `model`; prints and returns one line per case.

    Args:
      model: a model `ImageRenderer` can render both ways (`render_rays`, `config.render`,
        `foreground`, `background`); the accelerated settings come from `model.config.render`.
      name: the model's name in the lines (e.g. "demo").
      views_fn: `(size, batch) -> list of batch View`s at that image size.
      sizes: image sides, pixels.
      batches: views per case.
      peak_gflops: the run's matmul peak; adds gflops and ratios (`forward_flops_per_ray`):
        brute_ratio and fast_ratio (achieved field GFLOP/s of each / peak), and ratio = the
        exact render's FLOPs per second of the accelerated render's time / peak (the speed-up
        against the roofline: above 1 means faster than the exact renderer could ever be).
      max_brute_seconds: time the exact renderer on only as many views of a case as fit in this
        budget (predicted from the cases before; at least one): brute_views says how many, and
        psnr_diff / psnr_vs_brute are over those views. None: every view.
      **extra: more keys for every line (e.g. trained=1).
    """
    lines = []
    exact = ImageRenderer(model, accelerate=False)
    fast = ImageRenderer(model, accelerate=True)
    traced = set()
    brute_rays_per_s = None
    for size in sizes:
        chunk = min(exact.chunk_size, size * size)
        if chunk not in traced:
            # Trace both paths at this chunk shape, outside the timing (a 256 x 256 view uses the
            # 64 x 64 view's chunk shape when the chunk is 4096 rays).
            traced.add(chunk)
            warmup = views_fn(min(size, int(np.sqrt(chunk))), 1)
            _render(exact, warmup, min(size, int(np.sqrt(chunk))))
            _render(fast, warmup, min(size, int(np.sqrt(chunk))))
        for batch in batches:
            views = views_fn(size, batch)
            brute_views = batch
            if max_brute_seconds is not None and brute_rays_per_s:
                predicted = size * size / brute_rays_per_s
                brute_views = int(min(batch, max(1, max_brute_seconds // predicted)))
            brute_s, exact_renders = _timed_render(exact, views[:brute_views], size)
            brute_s /= brute_views
            brute_rays_per_s = size * size / brute_s
            fast.clear_grids()
            fast_s, fast_renders = _timed_render(fast, views, size)
            fast_s /= batch
            distinct = {np.asarray(v.latent, np.float32).tobytes(): v.latent for v in views}
            grid_s = _timed_grids(fast, distinct.values())
            samples = float(np.mean([r["samples_per_ray"].mean() for r in fast_renders]))
            brute_samples = int(exact_renders[0]["samples_per_ray"].flat[0])
            values = dict(
                model=name,
                size=size,
                batch=batch,
                brute_s=brute_s,
                fast_s=fast_s,
                samples_per_ray=samples,
                speedup=brute_s / fast_s,
            )
            compared = list(zip(fast_renders, exact_renders, views))
            if all(v.target is not None for v in views):
                brute_psnr = float(np.mean([_psnr(e["rgb"], v.target) for _, e, v in compared]))
                fast_psnr = float(np.mean([_psnr(f["rgb"], v.target) for f, _, v in compared]))
                values.update(psnr_diff=brute_psnr - fast_psnr)
            if peak_gflops:
                pixels = size * size
                brute_flops = pixels * forward_flops_per_ray(model, brute_samples)
                fast_flops = pixels * forward_flops_per_ray(model, samples)
                values.update(
                    ratio=brute_flops / fast_s / 1e9 / peak_gflops,
                    brute_ratio=brute_flops / brute_s / 1e9 / peak_gflops,
                    fast_ratio=fast_flops / fast_s / 1e9 / peak_gflops,
                    matmul_peak_gflops=peak_gflops,
                )
            if "psnr_diff" in values:
                values.update(brute_psnr=brute_psnr, fast_psnr=fast_psnr)
            values.update(
                psnr_vs_brute=float(np.mean([_psnr(f["rgb"], e["rgb"]) for f, e, _ in compared])),
                alpha_max_diff=float(
                    max(np.abs(f["alpha"] - e["alpha"]).max() for f, e, _ in compared)
                ),
                brute_samples_per_ray=brute_samples,
                brute_views=brute_views,
                grids=len(distinct),
                grid_s=grid_s,
                occupancy_resolution=model.config.render.occupancy_resolution,
                **extra,
            )
            lines.append(benchmarking.report("render", **values))
    return lines


def synthetic_views(dataset_path, latents, max_views: int | None = None):
    """A `views_fn` of held-out views of a synthetic data set, targets rendered at each size.

    Args:
      dataset_path: a dataset directory written by `tfglo.prepare --source=synthetic` (its
        dataset.json holds the synthetic config, so any view can be re-rendered exactly).
      latents: `[num_latents, D]` the trained table (a view of object k uses row latent_id).
      max_views: use at most this many held-out views (in data set order).

    Returns:
      `views_fn(size, batch)`: the first `batch` held-out views at `size` x `size` (the same
      field of view as the data set's cameras: focal length scaled with the size).

    Raises:
      ValueError: the data set is not synthetic, or has fewer held-out views than a batch asks.
    """
    metadata = dataset_dir.read_metadata(dataset_path)
    if "synthetic_config" not in metadata:
        raise ValueError(f"{dataset_path} is not a synthetic data set (no synthetic_config)")
    values = dict(metadata["synthetic_config"])
    config = heads.SyntheticConfig(**values)
    held_out = [r for r in dataset_dir.iterate_records(dataset_path) if r.split == "eval"]
    held_out = held_out[:max_views]
    latents = np.asarray(latents, np.float32)

    def views_fn(size: int, batch: int) -> list[View]:
        if batch > len(held_out):
            raise ValueError(f"{dataset_path} has {len(held_out)} held-out views, asked {batch}")
        views = []
        for record in held_out[:batch]:
            scale = size / record.width
            intrinsics = np.asarray(record.intrinsics, np.float32) * scale
            cam = camera_lib.make_camera(intrinsics, np.asarray(record.world_to_camera))
            target = heads.render_view(
                heads.object_params(config, record.object_id), cam, size, size
            )["image"]
            views.append(View(latents[record.latent_id], cam, target.astype(np.float32) / 255.0))
        return views

    return views_fn


def orbit_views(latent, distance: float = 4.0, yaw_deg: float = 30.0):
    """A `views_fn` of `batch` views of one latent on a yaw orbit (no targets)."""

    def views_fn(size: int, batch: int) -> list[View]:
        yaws = np.radians(np.linspace(-yaw_deg, yaw_deg, batch)) if batch > 1 else [0.0]
        eyes = camera_lib.orbit_eyes(
            np.asarray(yaws, np.float32),
            np.zeros(len(yaws), np.float32),
            np.full(len(yaws), distance, np.float32),
        )
        intrinsics = camera_lib.default_intrinsics(size, size)
        return [
            View(np.asarray(latent, np.float32), camera_lib.make_camera(intrinsics, pose))
            for pose in camera_lib.look_at(eyes).numpy()
        ]

    return views_fn
