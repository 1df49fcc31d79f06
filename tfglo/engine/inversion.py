"""Test-time fitting ("inversion"): a latent code for an image the model has never seen.

The trained network is frozen and a fresh code per image is optimised, by Adam, on random rays of
that image only, with the training colour and mask losses (DESIGN.md section 6). Codes start at
the mean of the trained latent table (the centre of the learned identity space), or at given
codes. Optionally the network weights are fine-tuned too (off by default: it overfits one view
and changes the model in place).

Several images are fitted at once: each has its own row of a `[B, D]` code variable and sees only
its own rays, so the codes do not interact (Adam's update is per element), and a batch is as
fast per step as one image of the same ray count.
"""

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from tfglo.engine import metrics
from tfglo.geometry import camera as camera_lib
from tfglo.nerf import image_renderer as render_image
from tfglo.nerf import losses


@dataclasses.dataclass(frozen=True)
class InversionConfig:
    """Settings of test-time latent fitting.

    Attributes:
      num_steps: optimisation steps.
      learning_rate: Adam learning rate of the codes.
      rays_per_image: random pixels of each image per step (sampled with replacement).
      mask_weight: weight of the mask loss (used for images that have a mask; 0 disables).
      finetune_weights: also optimise the network weights (changes the model in place; all
        images of one call share the fine-tuned weights, so fine-tune one image per call).
      finetune_learning_rate: Adam learning rate of the network weights when fine-tuning.
      perturb: jitter the stratified samples as in training (a frozen network was trained so).
      seed: seed of the ray sampling (the run is deterministic for a given seed).
      chunk_size: rays per chunk when rendering the fitted view for its PSNR (None: the
        model's default).
    """

    num_steps: int = 200
    learning_rate: float = 0.05
    rays_per_image: int = 512
    mask_weight: float = 0.1
    finetune_weights: bool = False
    finetune_learning_rate: float = 1e-4
    perturb: bool = True
    seed: int = 0
    chunk_size: int | None = None


def latent_mean(model) -> np.ndarray:
    """Mean `[D]` of the model's trained latent table."""
    return np.asarray(tf.reduce_mean(model.latent_table.embeddings, axis=0), np.float32)


def render_whole_image(model, latent, camera, height: int, width: int, chunk_size=None) -> dict:
    """Renders one image in chunks; reuses the model's cached renderer when it has one.

    Returns:
      dict: rgb `[H, W, 3]`, depth `[H, W]` (along the ray), alpha `[H, W]` (tensors).
    """
    if hasattr(model, "render_image"):
        return model.render_image(latent, camera, height, width, chunk_size=chunk_size)
    return render_image.render_image(model, latent, camera, height, width, chunk_size=chunk_size)


def _scene_radius(model) -> float | None:
    render_config = getattr(getattr(model, "config", None), "render", None)
    radius = getattr(render_config, "scene_radius", None)
    return None if radius is None else float(radius)


def _prepare(images, intrinsics, world_to_camera, masks):
    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    count, height, width = images.shape[:3]
    intrinsics = np.asarray(intrinsics, np.float32).reshape(-1, 4)
    world_to_camera = np.asarray(world_to_camera, np.float32).reshape(-1, 3, 4)
    if len(intrinsics) != count or len(world_to_camera) != count:
        raise ValueError(
            f"{count} images need {count} cameras, got {len(intrinsics)} intrinsics and "
            f"{len(world_to_camera)} poses"
        )
    if masks is not None:
        masks = np.asarray(masks, np.float32).reshape(-1, height, width)
        if len(masks) != count:
            raise ValueError(f"{count} images need {count} masks, got {len(masks)}")
    return images, intrinsics, world_to_camera, masks


def invert(
    model,
    images,
    intrinsics,
    world_to_camera,
    masks=None,
    config: InversionConfig = InversionConfig(),
    initial_latents=None,
) -> tuple[np.ndarray, dict]:
    """Fits one latent code per image with the network frozen.

    Args:
      model: a trained `LOLNeRF` (needs `latent_table`, `render_rays`, `network_variables`).
      images: `[B, H, W, 3]` (or one `[H, W, 3]`) images in [0, 1], all of one size.
      intrinsics: `[B, 4]` (fx, fy, cx, cy) of each image, pixels.
      world_to_camera: `[B, 3, 4]` camera of each image, in the model's canonical frame.
      masks: optional `[B, H, W]` foreground masks in [0, 1] (for the mask loss).
      config: optimisation settings.
      initial_latents: optional `[B, D]` or `[D]` starting codes; the table mean when None.

    Returns:
      (latents `[B, D]` float32, stats) where stats has: psnr (list of B floats, dB, of the
      fitted view rendered whole), steps, seconds (of the optimisation), loss_first, loss_last
      (mean training loss of the first and last 10 % of steps), rays_per_step.

    Raises:
      ValueError: inconsistent shapes, or a camera whose view misses the bounding sphere.
    """
    images, intrinsics, world_to_camera, masks = _prepare(
        images, intrinsics, world_to_camera, masks
    )
    count, height, width = images.shape[:3]
    latent_dim = int(model.latent_table.embeddings.shape[-1])
    if initial_latents is None:
        initial = np.tile(latent_mean(model)[None], [count, 1])
    else:
        initial = np.asarray(initial_latents, np.float32)
        initial = np.broadcast_to(initial, (count, latent_dim)) if initial.ndim == 1 else initial
        if initial.shape != (count, latent_dim):
            raise ValueError(
                f"initial_latents must be [{count}, {latent_dim}] or [{latent_dim}], got "
                f"{np.shape(initial_latents)}"
            )

    camera = camera_lib.make_camera(intrinsics, world_to_camera)
    origins, directions = camera_lib.image_rays(camera, height, width)
    num_pixels = height * width
    origins = tf.reshape(origins, [count, num_pixels, 3])
    directions = tf.reshape(directions, [count, num_pixels, 3])
    radius = _scene_radius(model)
    if radius is not None:
        _, _, hit = camera_lib.intersect_sphere(origins, directions, radius)
        seen = np.asarray(tf.reduce_any(hit, axis=1))
        if not seen.all():
            bad = [int(i) for i in np.flatnonzero(~seen)]
            raise ValueError(
                f"images {bad}: no ray of the camera reaches the bounding sphere of radius "
                f"{radius} (the camera points away from the object, or the image is not in "
                "the model's canonical frame)"
            )
    targets = tf.constant(images.reshape(count, num_pixels, 3))
    use_mask = masks is not None and config.mask_weight > 0
    mask_targets = tf.constant(
        (masks if masks is not None else np.ones((count, height, width), np.float32)).reshape(
            count, num_pixels
        )
    )

    latents = tf.Variable(initial, dtype=tf.float32, name="inverted_latents")
    latent_optimizer = keras.optimizers.Adam(config.learning_rate)
    network_variables = list(model.network_variables) if config.finetune_weights else []
    network_optimizer = (
        keras.optimizers.Adam(config.finetune_learning_rate) if config.finetune_weights else None
    )
    rays = config.rays_per_image

    @tf.function
    def step(index):
        seed = tf.stack([tf.constant(config.seed, tf.int32), tf.cast(index, tf.int32)])
        ray_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        pixels = tf.random.stateless_uniform(
            [count, rays], seed=ray_seed, maxval=num_pixels, dtype=tf.int32
        )
        o = tf.reshape(tf.gather(origins, pixels, batch_dims=1), [-1, 3])
        d = tf.reshape(tf.gather(directions, pixels, batch_dims=1), [-1, 3])
        rgb = tf.reshape(tf.gather(targets, pixels, batch_dims=1), [-1, 3])
        mask = tf.reshape(tf.gather(mask_targets, pixels, batch_dims=1), [-1])
        with tf.GradientTape() as tape:
            per_ray = tf.repeat(latents, rays, axis=0)
            render = model.render_rays(o, d, per_ray, training=config.perturb, seed=jitter_seed)
            loss = losses.color_loss(render["rgb"], rgb)
            if use_mask:
                loss += config.mask_weight * losses.mask_loss(render["alpha"], mask)
            # The sum over images of each image's mean loss: every code gets exactly the
            # gradient it would get if its image were fitted alone.
            objective = loss * count
        variables = [latents] + network_variables
        gradients = tape.gradient(objective, variables)
        latent_optimizer.apply_gradients([(gradients[0], latents)])
        if network_optimizer is not None:
            network_optimizer.apply_gradients(zip(gradients[1:], network_variables))
        return loss

    history = []
    start = time.perf_counter()
    for index in range(config.num_steps):
        history.append(float(step(tf.constant(index))))
    seconds = time.perf_counter() - start

    fitted = latents.numpy()
    psnrs = []
    for i in range(count):
        view = render_whole_image(
            model,
            fitted[i],
            camera_lib.Camera(camera.intrinsics[i], camera.world_to_camera[i]),
            height,
            width,
            chunk_size=config.chunk_size,
        )
        psnrs.append(metrics.psnr(np.asarray(view["rgb"]), images[i]))
    tenth = max(1, len(history) // 10)
    stats = {
        "psnr": psnrs,
        "steps": config.num_steps,
        "seconds": seconds,
        "loss_first": float(np.mean(history[:tenth])) if history else math.nan,
        "loss_last": float(np.mean(history[-tenth:])) if history else math.nan,
        "rays_per_step": count * rays,
    }
    return fitted, stats
