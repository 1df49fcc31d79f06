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
the accelerated render against the exact one.

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


def benchmark_render_speed(
    model,
    name: str,
    views_fn: Callable[[int, int], list[View]],
    sizes=(64, 256),
    batches=(1, 8),
) -> list[str]:
    """Exact vs accelerated whole-image renders of `model`; prints and returns one line per case.

    Args:
      model: a model `ImageRenderer` can render both ways (`render_rays`, `config.render`,
        `foreground`, `background`); the accelerated settings come from `model.config.render`.
      name: the model's name in the lines (e.g. "demo").
      views_fn: `(size, batch) -> list of batch View`s at that image size.
      sizes: image sides, pixels.
      batches: views per case.
    """
    lines = []
    exact = ImageRenderer(model, accelerate=False)
    fast = ImageRenderer(model, accelerate=True)
    for size in sizes:
        # Trace both paths at this size's chunk shape, outside the timing.
        warmup = views_fn(size, 1)
        _render(exact, warmup, size)
        _render(fast, warmup, size)
        for batch in batches:
            views = views_fn(size, batch)
            brute_s, exact_renders = _timed_render(exact, views, size)
            fast.clear_grids()
            fast_s, fast_renders = _timed_render(fast, views, size)
            brute_s, fast_s = brute_s / batch, fast_s / batch
            distinct = {np.asarray(v.latent, np.float32).tobytes(): v.latent for v in views}
            grid_s = _timed_grids(fast, distinct.values())
            samples = np.mean([r["samples_per_ray"].mean() for r in fast_renders])
            values = dict(
                model=name,
                size=size,
                batch=batch,
                brute_s=brute_s,
                fast_s=fast_s,
                samples_per_ray=float(samples),
                speedup=brute_s / fast_s,
            )
            if all(v.target is not None for v in views):
                brute_psnr = np.mean(
                    [_psnr(r["rgb"], v.target) for r, v in zip(exact_renders, views)]
                )
                fast_psnr = np.mean(
                    [_psnr(r["rgb"], v.target) for r, v in zip(fast_renders, views)]
                )
                values.update(
                    psnr_diff=float(brute_psnr - fast_psnr),
                    brute_psnr=float(brute_psnr),
                    fast_psnr=float(fast_psnr),
                )
            values.update(
                psnr_vs_brute=float(
                    np.mean(
                        [_psnr(f["rgb"], e["rgb"]) for f, e in zip(fast_renders, exact_renders)]
                    )
                ),
                alpha_max_diff=float(
                    max(
                        np.abs(f["alpha"] - e["alpha"]).max()
                        for f, e in zip(fast_renders, exact_renders)
                    )
                ),
                brute_samples_per_ray=int(exact_renders[0]["samples_per_ray"].flat[0]),
                grids=len(distinct),
                grid_s=grid_s,
                occupancy_resolution=model.config.render.occupancy_resolution,
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
