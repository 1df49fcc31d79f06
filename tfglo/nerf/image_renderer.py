"""Whole-image rendering in fixed-size ray chunks (its benchmark: `tfglo.lolnerf.benchmarks`).

An image's H x W rays are cut into chunks of one static size (the last chunk is padded by
repeating the last ray), so a single traced function renders every chunk and peak memory depends
on the chunk size, not on the resolution. Only rgb, depth and alpha of each chunk are kept.
"""

import math

import tensorflow as tf

from tfglo.geometry.camera import (
    Camera,
    image_rays,
    make_camera,
)

DEFAULT_CHUNK_SIZE = 4096


def _default_chunk_size(model) -> int:
    render_config = getattr(getattr(model, "config", None), "render", None)
    return int(getattr(render_config, "chunk_size", DEFAULT_CHUNK_SIZE))


class ImageRenderer:
    """Renders whole images of a model chunk by chunk, reusing one traced function.

    Keep one instance to render many frames (e.g. a video): the chunk function is traced once
    per chunk shape, not once per image.

    Args:
      model: an object with `render_rays(origins [N, 3], directions [N, 3], latents [N, D],
        training=False) -> dict` returning at least rgb `[N, 3]`, depth `[N]`, alpha `[N]`
        (e.g. `tfglo.lolnerf.model.LOLNeRF`), and optionally `config.render.chunk_size`.
      chunk_size: rays per chunk; defaults to `model.config.render.chunk_size` (else 4096).
      jit_compile: compile the chunk function with XLA.
    """

    def __init__(self, model, chunk_size: int | None = None, jit_compile: bool = False):
        chunk_size = _default_chunk_size(model) if chunk_size is None else int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.model = model
        self.chunk_size = chunk_size
        self._render_chunk = tf.function(self._chunk, jit_compile=jit_compile)

    def _chunk(self, origins, directions, latents):
        result = self.model.render_rays(origins, directions, latents, training=False)
        return {key: result[key] for key in ("rgb", "depth", "alpha")}

    def __call__(self, latent, camera: Camera, height: int, width: int) -> dict:
        """Renders one image.

        Args:
          latent: `[D]` latent code.
          camera: an unbatched `Camera` (intrinsics `[4]`, world_to_camera `[3, 4]`).
          height: image height, pixels (Python int).
          width: image width, pixels (Python int).

        Returns:
          dict: rgb `[H, W, 3]`, depth `[H, W]` (along the ray, object units; 0 off the object),
          alpha `[H, W]`.

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

        pieces = {"rgb": [], "depth": [], "alpha": []}
        for index in range(num_chunks):
            rows = slice(index * chunk, (index + 1) * chunk)
            result = self._render_chunk(origins[rows], directions[rows], latents)
            for key, values in pieces.items():
                values.append(result[key])
        out = {key: tf.concat(values, 0)[:num_rays] for key, values in pieces.items()}
        return {
            "rgb": tf.reshape(out["rgb"], [height, width, 3]),
            "depth": tf.reshape(out["depth"], [height, width]),
            "alpha": tf.reshape(out["alpha"], [height, width]),
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
