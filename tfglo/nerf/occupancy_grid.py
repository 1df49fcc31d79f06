"""Occupancy grid of one latent's foreground: which cells of the bounding cube may hold matter.

The foreground density is evaluated once at the centres of a G x G x G grid of cells over the
cube [-r, r]^3 around the bounding sphere (r = `RenderConfig.scene_radius`); a cell is occupied
when its density exceeds `RenderConfig.occupancy_threshold` (per object unit). The occupied set is
then dilated by `occupancy_dilation` cells (a max-pool), so that matter between cell centres, a
surface that only grazes a cell, or a part one cell thin is not lost: anything that covers a cell
centre marks that cell and its neighbours.

What the grid costs: G^3 field evaluations per latent (64^3 = 262144: about one 256 x 256 view at
4 samples per ray); it is built once per latent and reused for every view of it (orbits, several
held-out views, a serving batch that shares a latent). Evaluated in chunks of
`points_per_chunk` points, so peak memory is that of one render chunk, not of the grid.

Everything is TensorFlow ops with static shapes per resolution, so it builds inside a
`tf.function` or a SavedModel signature.

Index convention: `grid[i, j, k]` is the cell whose centre is
(-r + (i + 0.5) c, -r + (j + 0.5) c, -r + (k + 0.5) c) with c = 2 r / G: i along x, j along y,
k along z.
"""

from collections.abc import Callable

import tensorflow as tf

ForegroundFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def check_settings(resolution: int, threshold: float, dilation: int) -> None:
    """Raises ValueError for a resolution < 2, a negative threshold or a negative dilation."""
    if isinstance(resolution, bool) or int(resolution) != resolution or resolution < 2:
        raise ValueError(f"occupancy_resolution must be an int >= 2, got {resolution!r}")
    if threshold < 0.0:
        raise ValueError(f"occupancy_threshold must be >= 0, got {threshold}")
    if isinstance(dilation, bool) or int(dilation) != dilation or dilation < 0:
        raise ValueError(f"occupancy_dilation must be an int >= 0, got {dilation!r}")


def cell_centers(resolution: int, radius: float) -> tf.Tensor:
    """Centres of the grid's cells, `[G, G, G, 3]` float32, object units (`grid[i, j, k]`)."""
    cell = 2.0 * radius / resolution
    axis = -radius + (tf.range(resolution, dtype=tf.float32) + 0.5) * cell
    x, y, z = tf.meshgrid(axis, axis, axis, indexing="ij")
    return tf.stack([x, y, z], -1)


def evaluate_density(
    foreground_fn: ForegroundFn, latent, resolution: int, radius: float, points_per_chunk: int
) -> tf.Tensor:
    """The foreground density at every cell centre, `[G, G, G]` float32 (per object unit).

    The field sees the grid as G^2 "rays" of G points each (one row of cells along z), in chunks
    of at most `points_per_chunk` points run one after the other.

    Args:
      foreground_fn: `(points [N, S, 3], latents [N, D]) -> (density [N, S], rgb [N, S, 3])`.
      latent: `[D]` the latent code.
      resolution: G, cells per axis (static).
      radius: half the cube's side, object units.
      points_per_chunk: upper bound on points per field call (bounds peak memory).
    """
    latent = tf.convert_to_tensor(latent, tf.float32)
    if latent.shape.rank != 1:
        raise ValueError(f"the occupancy grid needs one latent [D], got {latent.shape}")
    rows = resolution * resolution
    rows_per_chunk = max(1, min(rows, int(points_per_chunk) // resolution))
    num_chunks = -(-rows // rows_per_chunk)
    points = tf.reshape(cell_centers(resolution, radius), [rows, resolution, 3])
    padding = num_chunks * rows_per_chunk - rows
    if padding:
        # Padded rows repeat a real row (finite field values); they are cut off below.
        points = tf.concat([points, tf.repeat(points[-1:], padding, axis=0)], 0)
    points = tf.reshape(points, [num_chunks, rows_per_chunk, resolution, 3])
    latents = tf.broadcast_to(latent[None, :], [rows_per_chunk, tf.shape(latent)[0]])

    def chunk_density(chunk_points):
        density, _ = foreground_fn(chunk_points, latents)
        return tf.cast(density, tf.float32)

    # One chunk at a time (parallel_iterations=1): memory stays that of one chunk.
    density = tf.map_fn(
        chunk_density,
        points,
        fn_output_signature=tf.TensorSpec([rows_per_chunk, resolution], tf.float32),
        parallel_iterations=1,
    )
    density = tf.reshape(density, [num_chunks * rows_per_chunk, resolution])[:rows]
    return tf.reshape(density, [resolution, resolution, resolution])


def dilate(occupied, dilation: int) -> tf.Tensor:
    """Grows an occupied set `[..., G, G, G]` bool by `dilation` cells (a 3-D max-pool)."""
    if dilation == 0:
        return occupied
    occupied = tf.convert_to_tensor(occupied)
    shape = tf.shape(occupied)
    grid = tf.reshape(tf.cast(occupied, tf.float32), tf.concat([[-1], shape[-3:], [1]], 0))
    size = 2 * dilation + 1
    pooled = tf.nn.max_pool3d(grid, ksize=size, strides=1, padding="SAME")
    return tf.reshape(pooled > 0.5, shape)


def build_grid(
    foreground_fn: ForegroundFn,
    latent,
    resolution: int,
    radius: float,
    threshold: float,
    dilation: int,
    points_per_chunk: int,
) -> tf.Tensor:
    """The dilated occupancy grid of one latent, `[G, G, G]` bool (see the module docstring).

    Args:
      foreground_fn: the foreground field, `(points [N, S, 3], latents [N, D]) -> (density, rgb)`.
      latent: `[D]` latent code.
      resolution: G, cells per axis.
      radius: the bounding sphere's radius, object units (the cube is [-radius, radius]^3).
      threshold: a cell is occupied when its centre's density exceeds this (per object unit).
      dilation: cells by which the occupied set grows.
      points_per_chunk: points per field call.
    """
    check_settings(resolution, threshold, dilation)
    density = evaluate_density(foreground_fn, latent, resolution, radius, points_per_chunk)
    return dilate(density > threshold, dilation)


def build_grids(
    foreground_fn: ForegroundFn,
    latents,
    resolution: int,
    radius: float,
    threshold: float,
    dilation: int,
    points_per_chunk: int,
) -> tf.Tensor:
    """`build_grid` for each of `latents` `[B, D]`, one after the other: `[B, G, G, G]` bool."""
    check_settings(resolution, threshold, dilation)
    latents = tf.convert_to_tensor(latents, tf.float32)
    if latents.shape.rank != 2:
        raise ValueError(f"build_grids needs latents [B, D], got {latents.shape}")
    grids = tf.map_fn(
        lambda latent: build_grid(
            foreground_fn, latent, resolution, radius, threshold, 0, points_per_chunk
        ),
        latents,
        fn_output_signature=tf.TensorSpec([resolution] * 3, tf.bool),
        parallel_iterations=1,
    )
    return dilate(grids, dilation)


def lookup(grids, points, radius: float, grid_index=None) -> tf.Tensor:
    """Whether each point lies in an occupied cell, `[N, S]` bool (points outside the cube: False).

    Args:
      grids: `[G, G, G]` bool (one grid for every ray) or `[B, G, G, G]` bool with `grid_index`.
      points: `[N, S, 3]` object units.
      radius: half the cube's side.
      grid_index: `[N]` int, the grid of each ray (rows of a `[B, G, G, G]` grids); required
        exactly when `grids` has rank 4.
    """
    grids = tf.convert_to_tensor(grids)
    points = tf.convert_to_tensor(points, tf.float32)
    resolution = grids.shape[-1]
    cell = tf.floor((points + radius) * (resolution / (2.0 * radius)))
    inside = tf.reduce_all((cell >= 0.0) & (cell < resolution), -1)
    cell = tf.cast(tf.clip_by_value(cell, 0.0, resolution - 1.0), tf.int32)
    if grids.shape.rank == 3:
        if grid_index is not None:
            raise ValueError("grid_index needs grids [B, G, G, G], got one grid [G, G, G]")
        occupied = tf.gather_nd(grids, cell)
    elif grids.shape.rank == 4:
        if grid_index is None:
            raise ValueError("grids [B, G, G, G] need grid_index [N]")
        index = tf.broadcast_to(
            tf.cast(grid_index, tf.int32)[:, None, None], tf.concat([tf.shape(cell)[:-1], [1]], 0)
        )
        occupied = tf.gather_nd(grids, tf.concat([index, cell], -1))
    else:
        raise ValueError(f"grids must be [G, G, G] or [B, G, G, G], got {grids.shape}")
    return occupied & inside
