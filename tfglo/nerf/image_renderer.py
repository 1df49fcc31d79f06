"""Whole-image rendering in fixed-size ray chunks (its benchmark: `tfglo.lolnerf.benchmarks`).

An image's H x W rays are cut into chunks of one static size (the last chunk is padded by
repeating the last ray), so a single traced function renders every chunk and peak memory depends
on the chunk size, not on the resolution. Only rgb, depth and alpha of each chunk are kept (and
the foreground evaluations per ray).

Two paths render a chunk: the exact brute-force `VolumeRenderer` (the model's `render_rays`), or,
with `RenderConfig.accelerate` (or `accelerate=True`), the `AcceleratedRenderer`: the latent's
occupancy grid is built once and cached for the following views of the same latent, then each
chunk samples only occupied space and stops rays at the surface.
"""

import collections
import math

import tensorflow as tf

from tfglo.geometry.camera import (
    Camera,
    image_rays,
    make_camera,
)
from tfglo.nerf import accelerated_renderer
from tfglo.nerf.accelerated_renderer import AcceleratedRenderer

DEFAULT_CHUNK_SIZE = 4096
# Occupancy grids kept per ImageRenderer (one per recently rendered latent).
MAX_CACHED_GRIDS = 16


def _render_config(model):
    return getattr(getattr(model, "config", None), "render", None)


def _default_chunk_size(model) -> int:
    return int(getattr(_render_config(model), "chunk_size", DEFAULT_CHUNK_SIZE))


class ImageRenderer:
    """Renders whole images of a model chunk by chunk, reusing one traced function.

    Keep one instance to render many frames (e.g. a video): the chunk function is traced once
    per chunk shape, not once per image.

    Args:
      model: an object with `render_rays(origins [N, 3], directions [N, 3], latents [N, D],
        training=False) -> dict` returning at least rgb `[N, 3]`, depth `[N]`, alpha `[N]`
        (e.g. `tfglo.lolnerf.model.LOLNeRF`), and optionally `config.render.chunk_size`.
      chunk_size: rays per chunk; defaults to `model.config.render.chunk_size` (else 4096).
      jit_compile: compile the exact path's chunk function with XLA (the accelerated path has
        data-dependent shapes and is never compiled).
      accelerate: use the `AcceleratedRenderer`; None follows `model.config.render.accelerate`
        (False when the model has no render config or no `foreground`). It needs
        `model.config.render` and the fields as `model.foreground` (and `model.background`,
        None for a constant colour).

    Raises:
      ValueError: chunk_size < 1, or `accelerate` for a model without the attributes above.
    """

    def __init__(
        self,
        model,
        chunk_size: int | None = None,
        jit_compile: bool = False,
        accelerate: bool | None = None,
    ):
        chunk_size = _default_chunk_size(model) if chunk_size is None else int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.chunk_size = chunk_size
        render_config = _render_config(model)
        if accelerate is None:
            # Follow the model's setting where it can be followed: a model without the fields
            # (e.g. a stand-in with render_rays only) renders exactly.
            accelerate = bool(getattr(render_config, "accelerate", False)) and hasattr(
                model, "foreground"
            )
        self.accelerate = bool(accelerate)
        self._grids = collections.OrderedDict()
        if self.accelerate:
            if render_config is None or not hasattr(model, "foreground"):
                raise ValueError(
                    "accelerated rendering needs a model with config.render and a foreground "
                    f"field (model.foreground), got {type(model).__name__}"
                )
            samples = render_config.num_coarse + render_config.num_fine
            self.accelerated = AcceleratedRenderer(
                render_config,
                min(accelerated_renderer.GRID_POINTS_PER_CHUNK, chunk_size * samples),
            )
            # No autograph: the accelerated path has no tensor-dependent Python control flow.
            self._render_chunk = tf.function(self._accelerated_chunk, autograph=False)
            self._build_grid = tf.function(
                lambda latent: self.accelerated.build_grid(model.foreground, latent),
                autograph=False,
            )
            self._fingerprint = tf.function(
                lambda: tf.stack([tf.reduce_sum(v) for v in model.foreground.weights])
            )
        else:
            self.accelerated = None
            self._render_chunk = tf.function(self._chunk, jit_compile=jit_compile)

    def _chunk(self, origins, directions, latents, grid=None):
        del grid  # The exact path samples every ray fully.
        result = self.model.render_rays(origins, directions, latents, training=False)
        out = {key: result[key] for key in ("rgb", "depth", "alpha", "max_weight") if key in result}
        samples = tf.shape(result["z_values"])[-1] if "z_values" in result else 0
        out["samples_per_ray"] = tf.fill(tf.shape(out["alpha"]), samples)
        return out

    def _accelerated_chunk(self, origins, directions, latents, grid):
        result = self.accelerated.render_rays(
            self.model.foreground,
            getattr(self.model, "background", None),
            origins,
            directions,
            latents,
            grid,
        )
        return {key: result[key] for key in ("rgb", "depth", "alpha", "samples_per_ray")}

    def grid(self, latent) -> tf.Tensor:
        """The occupancy grid of `latent` `[D]`, `[G, G, G]` bool (accelerated path only).

        Cached for the last `MAX_CACHED_GRIDS` latents; the key includes a fingerprint of the
        foreground's weights (the sum of each variable), so a grid is rebuilt after the weights
        change (e.g. image summaries during training).
        """
        if not self.accelerate:
            raise ValueError("grid() is for the accelerated path (accelerate=True)")
        latent = tf.convert_to_tensor(latent, tf.float32)
        key = (latent.numpy().tobytes(), self._fingerprint().numpy().tobytes())
        if key in self._grids:
            self._grids.move_to_end(key)
        else:
            self._grids[key] = self._build_grid(latent)
            while len(self._grids) > MAX_CACHED_GRIDS:
                self._grids.popitem(last=False)
        return self._grids[key]

    def clear_grids(self) -> None:
        """Forgets the cached occupancy grids (the next view of each latent rebuilds its grid)."""
        self._grids.clear()

    def __call__(self, latent, camera: Camera, height: int, width: int) -> dict:
        """Renders one image.

        Args:
          latent: `[D]` latent code.
          camera: an unbatched `Camera` (intrinsics `[4]`, world_to_camera `[3, 4]`).
          height: image height, pixels (Python int).
          width: image width, pixels (Python int).

        Returns:
          dict: rgb `[H, W, 3]`, depth `[H, W]` (along the ray, object units; 0 off the object),
          alpha `[H, W]`, samples_per_ray `[H, W]` int32 (foreground evaluations per pixel), and
          on the exact path max_weight `[H, W]` (a ray's largest sample weight: hardness).

        Raises:
          ValueError: a batched camera, a latent that is not a vector, or an empty image.
        """
        camera = make_camera(camera.intrinsics, camera.world_to_camera)
        if camera.intrinsics.shape.rank != 1:
            raise ValueError(
                f"render_image needs an unbatched camera, got intrinsics {camera.intrinsics.shape}"
            )
        latent = tf.convert_to_tensor(latent, tf.float32)
        if latent.shape.rank != 1:
            raise ValueError(f"latent must have shape [D], got {latent.shape}")
        height, width = int(height), int(width)
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")

        origins, directions = image_rays(camera, height, width)
        num_rays = height * width
        origins = tf.reshape(origins, [num_rays, 3])
        directions = tf.reshape(directions, [num_rays, 3])
        # A small image needs no padding up to a large chunk.
        chunk = min(self.chunk_size, num_rays)
        num_chunks = math.ceil(num_rays / chunk)
        padding = num_chunks * chunk - num_rays
        if padding:
            # Repeat the last ray: a real ray keeps the padded rows finite and is cheap to drop.
            origins = tf.concat([origins, tf.repeat(origins[-1:], padding, axis=0)], 0)
            directions = tf.concat([directions, tf.repeat(directions[-1:], padding, axis=0)], 0)
        latents = tf.broadcast_to(latent[None, :], [chunk, latent.shape[0]])
        grid = self.grid(latent) if self.accelerate else None

        pieces: dict[str, list] = {}
        for index in range(num_chunks):
            rows = slice(index * chunk, (index + 1) * chunk)
            result = self._render_chunk(origins[rows], directions[rows], latents, grid)
            for key, value in result.items():
                pieces.setdefault(key, []).append(value)
        out = {key: tf.concat(values, 0)[:num_rays] for key, values in pieces.items()}
        return {
            key: tf.reshape(value, [height, width, 3] if key == "rgb" else [height, width])
            for key, value in out.items()
        }


def render_image(model, latent, camera: Camera, height: int, width: int, chunk_size=None) -> dict:
    """Renders one image in fixed-size ray chunks (see `ImageRenderer`).

    Args:
      model: has `render_rays(origins, directions, latents, training=False) -> dict`.
      latent: `[D]` latent code.
      camera: an unbatched `Camera`.
      height: image height, pixels.
      width: image width, pixels.
      chunk_size: rays per chunk (default `model.config.render.chunk_size`).

    Returns:
      dict: rgb `[H, W, 3]`, depth `[H, W]`, alpha `[H, W]`.
    """
    return ImageRenderer(model, chunk_size)(latent, camera, height, width)
