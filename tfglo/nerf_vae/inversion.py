"""LOLNeRF-style latent optimisation for NeRF-VAE scenes, with a held-out PSNR curve.

The trained decoder is frozen; one code per scene is optimised by Adam on random rays of the
scene's context views with LOLNeRF's inversion losses (colour MSE + mask_weight x mask MSE,
`tfglo.engine.inversion.InversionConfig`). Unlike `tfglo.engine.inversion.invert` (one code per
image), a scene's code sees the rays of all its context views. Codes start at given points: the
prior mean (zeros) or the encoder's posterior mean (encoder-initialised inversion). Along the way
the held-out PSNR is measured on a fixed set of rays of each scene's held-out views (all of
their pixels, or a fixed random subset of `heldout_rays`), at the steps of `curve_steps`, so the
two starts can be compared step for step.

Several scenes are fitted at once: each has its own row of the code variable and sees only its own
rays (Adam's update is per element), so the codes do not interact.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf

from tfglo.engine import inversion as engine_inversion
from tfglo.geometry import camera as camera_lib
from tfglo.nerf import losses


def view_rays(views: list[dict]) -> dict[str, np.ndarray]:
    """Every pixel ray of some views, concatenated.

    Args:
      views: dicts with image `[H, W, 3]`, intrinsics `[4]`, world_to_camera `[3, 4]`, and
        optionally mask `[H, W]` (None: all ones).

    Returns:
      origins `[P, 3]`, directions `[P, 3]`, rgb `[P, 3]`, mask `[P]` float32 (P = the views'
      pixels).
    """
    out = {"origins": [], "directions": [], "rgb": [], "mask": []}
    for view in views:
        height, width = view["image"].shape[:2]
        cam = camera_lib.make_camera(view["intrinsics"], view["world_to_camera"])
        origins, directions = camera_lib.image_rays(cam, height, width)
        out["origins"].append(np.asarray(origins).reshape(-1, 3))
        out["directions"].append(np.asarray(directions).reshape(-1, 3))
        out["rgb"].append(np.asarray(view["image"], np.float32).reshape(-1, 3))
        mask = view.get("mask")
        mask = np.ones([height, width], np.float32) if mask is None else mask
        out["mask"].append(np.asarray(mask, np.float32).reshape(-1))
    return {k: np.concatenate(v, 0).astype(np.float32) for k, v in out.items()}


def curve_steps(num_steps: int, points: int = 6) -> list[int]:
    """0 and num_steps / 2^j for j = points - 1 .. 0 (rounded, distinct): where PSNR is measured."""
    steps = {0, num_steps}
    steps |= {max(1, round(num_steps / 2**j)) for j in range(points)}
    return sorted(s for s in steps if s <= num_steps)


def _stack_pools(pools: list[dict], count: int | None, seed: int) -> dict[str, np.ndarray]:
    """`[S, N, ...]` arrays from per-scene ray pools: the first `count` rays of a fixed random
    order (all rays, repeated cyclically to the longest pool, when count is None)."""
    rng = np.random.default_rng(seed)
    sizes = [len(p["rgb"]) for p in pools]
    size = max(sizes) if count is None else count
    out = {k: [] for k in pools[0]}
    for pool, total in zip(pools, sizes):
        order = rng.permutation(total)
        index = np.resize(order, size) if count is None or count > total else order[:size]
        for key, values in pool.items():
            out[key].append(values[index])
    return {k: np.stack(v) for k, v in out.items()}


def fit_scene_latents(
    model,
    context_pools: list[dict],
    initial_latents,
    config: engine_inversion.InversionConfig,
    curve: "HeldoutPSNR | None" = None,
    record_steps=None,
) -> tuple[np.ndarray, dict]:
    """Fits one code per scene with the decoder frozen (module docstring).

    Args:
      model: a trained NeRF-VAE (`render_rays(origins, directions, latents, training, seed)`).
      context_pools: per scene, `view_rays` of its context views.
      initial_latents: `[S, D]` start codes.
      config: steps, learning rate, rays per scene and step (`rays_per_image`), mask weight,
        jitter, seed (the same for every start, so starts see the same rays).
      curve: a `HeldoutPSNR` of the scenes' held-out views (None: no curve).
      record_steps: steps at which the held-out PSNR is measured (default `curve_steps`).

    Returns:
      (codes `[S, D]`, stats): stats has steps (the recorded steps), psnr (held-out PSNR over all
      scenes' rays at each recorded step, dB; empty without a curve), loss_first,
      loss_last, seconds (optimisation only), num_steps.

    Raises:
      ValueError: the number of pools and start codes disagree.
    """
    initial = np.asarray(initial_latents, np.float32)
    count = len(context_pools)
    if initial.ndim != 2 or initial.shape[0] != count:
        raise ValueError(f"initial_latents must be [{count}, D], got {initial.shape}")
    rays = config.rays_per_image
    pool = _stack_pools(context_pools, None, config.seed)
    pool_size = pool["rgb"].shape[1]
    pool = {k: tf.constant(v) for k, v in pool.items()}
    latents = tf.Variable(initial, name="scene_latents")
    optimizer = keras.optimizers.Adam(config.learning_rate)
    optimizer.build([latents])
    use_mask = config.mask_weight > 0

    @tf.function
    def step(index):
        seed = tf.stack([tf.constant(config.seed, tf.int32), tf.cast(index, tf.int32)])
        ray_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        pick = tf.random.stateless_uniform(
            [count, rays], seed=ray_seed, maxval=pool_size, dtype=tf.int32
        )
        batch = {k: tf.gather(v, pick, batch_dims=1) for k, v in pool.items()}
        with tf.GradientTape() as tape:
            render = model.render_rays(
                tf.reshape(batch["origins"], [-1, 3]),
                tf.reshape(batch["directions"], [-1, 3]),
                tf.repeat(latents, rays, axis=0),
                training=config.perturb,
                seed=jitter_seed,
            )
            loss = losses.color_loss(render["rgb"], tf.reshape(batch["rgb"], [-1, 3]))
            if use_mask:
                mask = tf.reshape(batch["mask"], [-1])
                loss += config.mask_weight * losses.mask_loss(render["alpha"], mask)
            # Each scene's mean loss summed: every code gets the gradient of its scene alone.
            objective = loss * count
        gradient = tape.gradient(objective, latents)
        optimizer.apply_gradients([(gradient, latents)])
        return loss

    record = set(curve_steps(config.num_steps) if record_steps is None else record_steps)
    steps, psnrs, history, seconds = [], [], [], 0.0
    for index in range(config.num_steps + 1):
        if curve is not None and index in record:
            steps.append(index)
            psnrs.append(curve(latents.numpy()))
        if index == config.num_steps:
            break
        start = time.perf_counter()
        history.append(float(step(tf.constant(index))))
        seconds += time.perf_counter() - start
    tenth = max(1, len(history) // 10)
    stats = {
        "steps": steps,
        "psnr": psnrs,
        "num_steps": config.num_steps,
        "seconds": seconds,
        "loss_first": float(np.mean(history[:tenth])) if history else math.nan,
        "loss_last": float(np.mean(history[-tenth:])) if history else math.nan,
    }
    return latents.numpy(), stats


class HeldoutPSNR:
    """PSNR of codes on a fixed set of rays per scene (chunked, no jitter, one traced shape).

    Args:
      model: has `render_rays`.
      pools: per scene, `view_rays` of its held-out views ([] : only `score` is used).
      rays: rays per scene (a fixed random subset; None: every pixel).
      seed: seed of the subset.
      chunk_size: rays rendered at once.
    """

    def __init__(self, model, pools, rays: int | None, seed: int = 0, chunk_size: int = 4096):
        self.model = model
        self.chunk_size = chunk_size
        self.pools = _stack_pools(pools, rays, seed) if pools else None
        self._render = tf.function(self._render_chunk, reduce_retracing=True)

    def _render_chunk(self, origins, directions, latents):
        return self.model.render_rays(origins, directions, latents, training=False)["rgb"]

    def render(self, latents, origins, directions) -> np.ndarray:
        """`[S * N, 3]` colours of rays `[S * N, 3]`, scene s's N rays with code s of `[S, D]`."""
        total = len(origins)
        per_ray = np.repeat(np.asarray(latents, np.float32), total // len(latents), axis=0)
        chunk = min(self.chunk_size, total)
        out = []
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            pad = chunk - (stop - start)  # one traced shape: pad the last chunk
            rows = np.concatenate([np.arange(start, stop), np.full([pad], stop - 1)])
            colours = self._render(origins[rows], directions[rows], per_ray[rows])
            out.append(np.asarray(colours)[: stop - start])
        return np.concatenate(out, 0)

    def score(self, latents, pool: dict) -> float:
        """PSNR (dB) of codes `[S, D]` on `[S, N, ...]` (or, one scene, `[N, ...]`) ray arrays."""
        origins = np.asarray(pool["origins"], np.float32).reshape(-1, 3)
        directions = np.asarray(pool["directions"], np.float32).reshape(-1, 3)
        targets = np.asarray(pool["rgb"], np.float32).reshape(-1, 3)
        mse = float(np.mean((self.render(latents, origins, directions) - targets) ** 2))
        return -10.0 * math.log10(max(mse, 1e-10))

    def __call__(self, latents) -> float:
        """Held-out PSNR (dB) over every scene's rays of `pools`."""
        return self.score(latents, self.pools)
