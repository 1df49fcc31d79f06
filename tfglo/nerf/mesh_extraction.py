"""A coloured triangle mesh of one object from a conditioned foreground field (issue 16 item 2).

`extract_mesh(field, latent, config, scene_radius)`:

1. samples the foreground density for one latent on a regular grid of `resolution`^3 cell
   centres covering the bounding sphere's cube; only samples strictly inside the sphere are
   evaluated (~52 % of the cube), the others are empty space (density 0), so the surface is
   closed where the object meets the sphere, as the renderer, which never looks outside it,
   sees it;
2. evaluates the field in fixed-size chunks of points (one traced function), one x-slab of the
   grid at a time, so the only large array is the float32 grid itself (64 MiB at 256^3) and
   peak memory does not grow with the chunk count (see `benchmark_mesh`);
3. runs marching cubes at the density `level` (`tfglo.geometry.mesh.marching_cubes`);
4. colours each vertex with the field's rgb a little inside the surface (`color_offset` grid
   steps against the outward normal: the colour is trained where the rendering weights peak,
   just behind the level set, not in the thin air in front of it).

The field is any callable `field(points [N, S, 3], latents [N, D]) -> (density [N, S], rgb
[N, S, 3])`, e.g. `tfglo.nerf.fields.ForegroundField` (a LOLNeRF's `model.foreground`, with a
row of its latent table or an inverted latent).
"""

import dataclasses
import resource
import sys
import time

import numpy as np
import tensorflow as tf

from tfglo.geometry import mesh as mesh_lib
from tfglo.utils import benchmarking


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Settings of mesh extraction.

    Attributes:
      resolution: grid samples per axis across the bounding sphere's diameter (the grid step is
        2 scene_radius / resolution, object units).
      level: iso value of the foreground density (per object unit of length). Opacity over a
        length L of constant density sigma is 1 - exp(-sigma L): 10 is 63 % over a tenth of a
        unit (a tenth of the default sphere's radius).
      chunk_points: points per field evaluation (bounds the activations' memory).
      color_offset: vertices are coloured by the field this many grid steps inside the surface
        (along the inward normal); 0 colours at the vertex itself.
    """

    resolution: int = 256
    level: float = 10.0
    chunk_points: int = 65536
    color_offset: float = 0.5

    def __post_init__(self):
        if self.resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {self.resolution}")
        if self.chunk_points < 1:
            raise ValueError(f"chunk_points must be >= 1, got {self.chunk_points}")
        if not np.isfinite(self.level) or self.level <= 0:
            raise ValueError(f"level must be a positive density, got {self.level}")
        if self.color_offset < 0:
            raise ValueError(f"color_offset must be >= 0, got {self.color_offset}")


def grid_axis(resolution: int, scene_radius: float) -> tuple[np.ndarray, float]:
    """Cell-centre coordinates `[resolution]` along one axis of the sphere's cube, and the step."""
    step = 2.0 * scene_radius / resolution
    return (-scene_radius + (np.arange(resolution) + 0.5) * step).astype(np.float32), step


class _ChunkEvaluator:
    """Evaluates `field` on fixed-size chunks of points for one latent (traced once)."""

    def __init__(self, field, latent, chunk_points: int):
        self.latent = tf.reshape(tf.convert_to_tensor(latent, tf.float32), [1, -1])
        self.chunk_points = int(chunk_points)
        self.field = field
        self.points_evaluated = 0
        self._call = tf.function(
            self._evaluate,
            input_signature=[tf.TensorSpec([self.chunk_points, 3], tf.float32)],
        )

    def _evaluate(self, points):
        density, rgb = self.field(points[None], self.latent)
        return tf.cast(density[0], tf.float32), tf.cast(rgb[0], tf.float32)

    def __call__(self, points: np.ndarray, with_rgb: bool = False):
        """Evaluates `[P, 3]` points; returns density `[P]` (and rgb `[P, 3]`), numpy float32."""
        count = len(points)
        self.points_evaluated += count
        densities = np.empty([count], np.float32)
        colors = np.empty([count, 3], np.float32) if with_rgb else None
        for start in range(0, count, self.chunk_points):
            chunk = points[start : start + self.chunk_points]
            size = len(chunk)
            if size < self.chunk_points:  # pad with the last point: one static shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.chunk_points - size, 0)])
            density, rgb = self._call(tf.constant(chunk, tf.float32))
            densities[start : start + size] = density.numpy()[:size]
            if with_rgb:
                colors[start : start + size] = rgb.numpy()[:size]
        return (densities, colors) if with_rgb else densities


def density_grid(field, latent, config: MeshConfig, scene_radius: float) -> np.ndarray:
    """Samples the foreground density of one latent inside the bounding sphere.

    Args:
      field: `field(points [N, S, 3], latents [N, D]) -> (density [N, S], rgb [N, S, 3])`.
      latent: `[D]` latent code.
      config: resolution and chunking.
      scene_radius: radius of the bounding sphere around the origin, object units.

    Returns:
      `[R, R, R]` float32 densities (R = config.resolution) at the cell centres `grid_axis`,
      index order (x, y, z); 0 outside the sphere.
    """
    evaluator = _ChunkEvaluator(field, latent, config.chunk_points)
    return _density_grid(evaluator, config.resolution, scene_radius)


def _density_grid(evaluator: _ChunkEvaluator, resolution: int, scene_radius: float) -> np.ndarray:
    """Fills the grid slab by slab, evaluating only full chunks of inside points (plus one last
    partial chunk), so no chunk is padded per slab."""
    axis, _ = grid_axis(resolution, scene_radius)
    grid = np.zeros([resolution] * 3, np.float32)
    flat = grid.reshape(-1)
    yy, zz = np.meshgrid(axis, axis, indexing="ij")
    yz_squared = yy**2 + zz**2
    slab_indices = np.arange(resolution * resolution, dtype=np.int64)
    pending_points, pending_indices, pending = [], [], 0
    chunk = evaluator.chunk_points

    def flush(points, indices):
        flat[indices] = evaluator(points)

    for i, x in enumerate(axis):
        inside = (x * x + yz_squared < scene_radius**2).reshape(-1)
        if not inside.any():
            continue
        count = int(inside.sum())
        points = np.stack(
            [np.full(count, x, np.float32), yy.reshape(-1)[inside], zz.reshape(-1)[inside]], -1
        )
        pending_points.append(points)
        pending_indices.append(i * resolution * resolution + slab_indices[inside])
        pending += count
        if pending >= chunk:
            points = np.concatenate(pending_points)
            indices = np.concatenate(pending_indices)
            full = (pending // chunk) * chunk
            flush(points[:full], indices[:full])
            pending_points, pending_indices = [points[full:]], [indices[full:]]
            pending -= full
    if pending:
        flush(np.concatenate(pending_points), np.concatenate(pending_indices))
    return grid


def extract_mesh(field, latent, config: MeshConfig, scene_radius: float) -> mesh_lib.Mesh:
    """The coloured level-set mesh of one object's foreground density.

    Args:
      field: `field(points [N, S, 3], latents [N, D]) -> (density [N, S], rgb [N, S, 3])`, e.g.
        a `ForegroundField`.
      latent: `[D]` latent code of the object.
      config: resolution, level, chunking, colour offset.
      scene_radius: radius of the bounding sphere around the origin, object units.

    Returns:
      A `Mesh` in the package's canonical frame (object units) with outward normals and uint8
      sRGB vertex colours; `Mesh.empty()` when the density never exceeds the level.
    """
    evaluator = _ChunkEvaluator(field, latent, config.chunk_points)
    axis, step = grid_axis(config.resolution, scene_radius)
    grid = _density_grid(evaluator, config.resolution, scene_radius)
    mesh = mesh_lib.marching_cubes(grid, config.level, origin=(axis[0],) * 3, spacing=step)
    del grid
    if mesh.is_empty:
        return mesh
    inner = mesh.vertices - config.color_offset * step * mesh.normals
    _, rgb = evaluator(inner.astype(np.float32), with_rgb=True)
    mesh.colors = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return mesh


def mesh_summary(mesh: mesh_lib.Mesh, scene_radius: float) -> dict:
    """JSON-able facts about a mesh: counts, closedness, extent (for reports and lift.json)."""
    topology = mesh_lib.topology(mesh)
    radii = np.linalg.norm(mesh.vertices, axis=-1) if len(mesh.vertices) else np.zeros([1])
    return {
        "vertices": topology.num_vertices,
        "faces": topology.num_faces,
        "watertight": topology.watertight,
        "components": topology.num_components,
        "euler_characteristic": topology.euler_characteristic,
        "max_vertex_radius": float(radii.max()),
        "scene_radius": float(scene_radius),
    }


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB, macOS bytes).

    Linux: /proc/self/status VmHWM, this process's own peak (getrusage's ru_maxrss survives
    exec, so in this child of `python -m tfglo.bench` it would give the parent's peak).
    """
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024.0
    except (OSError, StopIteration):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def benchmark_mesh(peak_gflops: float, resolution: int = 256) -> None:
    """Prints `mesh resolution=... points_per_s=... peak_rss_mib=... peak_ratio=...`.

    Runs in a fresh Python process so that its peak RSS is the extraction's alone (other
    benchmarks of `tfglo.bench` share this process); see `_benchmark_in_process`.
    """
    import subprocess

    code = (
        "from tfglo.nerf import mesh_extraction as m; "
        f"m._benchmark_in_process({float(peak_gflops)!r}, {int(resolution)})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("mesh ")]
    if result.returncode or not lines:
        # A failure, not a skip: `python -m tfglo.bench` reports it and exits non-zero.
        raise RuntimeError(
            f"the mesh benchmark process failed (exit status {result.returncode}): "
            f"{result.stderr.strip()[-2000:]}"
        )
    print(lines[-1], flush=True)


def _benchmark_in_process(peak_gflops: float, resolution: int) -> None:
    """The default-size foreground field (8 x 256) at `resolution`^3, in this process.

    Random weights; the level is the median density inside the sphere, so the level set is a
    large, busy surface (many vertices to colour). `peak_rss_start_mib` is the peak after
    TensorFlow started and the field was built and run once; `peak_rss_mib` after extraction:
    the difference is what extraction adds.
    """
    from tfglo.nerf import config as config_lib
    from tfglo.nerf import fields

    field = fields.ForegroundField(config_lib.ForegroundConfig())
    latent_dim = 64
    field.build((None, None, 3), (None, latent_dim))
    latent = np.zeros([latent_dim], np.float32)
    config = MeshConfig(resolution=resolution)
    field(tf.zeros([1, config.chunk_points, 3]), tf.zeros([1, latent_dim]))
    rss_start = _peak_rss_mib()
    evaluator = _ChunkEvaluator(field, latent, config.chunk_points)
    start = time.perf_counter()
    axis, step = grid_axis(resolution, 1.0)
    grid = _density_grid(evaluator, resolution, 1.0)
    grid_seconds = time.perf_counter() - start
    level = float(np.median(grid[grid > 0]))
    mesh = mesh_lib.marching_cubes(grid, level, origin=(axis[0],) * 3, spacing=step)
    del grid
    if not mesh.is_empty:
        evaluator(mesh.vertices, with_rgb=True)
    seconds = time.perf_counter() - start
    per_sample, _ = field.multiply_adds()
    gflops = 2.0 * evaluator.points_evaluated * per_sample / seconds / 1e9
    benchmarking.report(
        "mesh",
        resolution=resolution,
        points=evaluator.points_evaluated,
        vertices=len(mesh.vertices),
        seconds=seconds,
        grid_seconds=grid_seconds,
        points_per_s=evaluator.points_evaluated / seconds,
        gflops=gflops,
        peak_ratio=gflops / peak_gflops,
        grid_mib=resolution**3 * 4 / 2**20,
        peak_rss_start_mib=rss_start,
        peak_rss_mib=_peak_rss_mib(),
    )
