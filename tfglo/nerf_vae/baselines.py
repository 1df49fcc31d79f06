"""The per-scene NeRF baseline: a NeRF fit from scratch to one scene's k context views.

NeRF-VAE's headline comparison (the paper's Figure 4): from the same few views of an unseen
scene, the amortised encoder + shared decoder against a NeRF trained on those views alone. The
baseline is LOLNeRF's model with a one-row latent table (the lego path: a single scene is a
latent table of one row), built with the run's decoder settings (fields, samples, scene radius,
background), fresh weights, and trained for a fixed step budget with LOLNeRF's losses (colour MSE
+ mask + hard surface) on random rays of the context views only. Its held-out views are then
rendered like NeRF-VAE's.
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from tfglo.lolnerf import config as lolnerf_config
from tfglo.lolnerf import model as lolnerf_model
from tfglo.nerf import config as nerf_config
from tfglo.nerf import losses
from tfglo.nerf_vae import inversion


@dataclasses.dataclass(frozen=True)
class PerSceneNeRFConfig:
    """How the per-scene NeRF baseline is trained.

    Attributes:
      steps: optimisation steps per scene and number of context views (the fixed budget).
      learning_rate: Adam learning rate (weights and the one latent row), decayed 10x over the
        budget.
      rays: random rays per step, drawn from all the context views' pixels.
      seed: seeds the weights and the rays.
    """

    steps: int = 1000
    learning_rate: float = 2e-3
    rays: int = 1024
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "rays"):
            if getattr(self, name) < 1:
                raise ValueError(f"per-scene NeRF {name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def baseline_model_config(model_config) -> lolnerf_config.ModelConfig:
    """A one-row LOLNeRF with a NeRF-VAE run's decoder settings (fields, renderer, background)."""
    return lolnerf_config.ModelConfig(
        num_latents=1,
        latent_dim=model_config.latent_dim,
        latent_init_std=0.0,
        foreground=model_config.foreground,
        background=model_config.background,
        render=model_config.render,
    )


class PerSceneNeRF:
    """Fits one-row LOLNeRFs to scenes, one after the other, with one traced training step.

    The model, its optimiser and the step function are made once; `fit` resets the weights to
    the same seeded initial values and the optimiser's moments and step to zero before each
    scene, so every scene starts from the same point and nothing is retraced between scenes
    (only when the number of context pixels changes).

    Args:
      model_config: the NeRF-VAE run's `NeRFVAEConfig` (decoder settings).
      loss_config: mask and hard-surface weights.
      config: the step budget, learning rate, rays per step, seed.
    """

    def __init__(
        self,
        model_config,
        loss_config: nerf_config.LossConfig,
        config: PerSceneNeRFConfig = PerSceneNeRFConfig(),
    ):
        self.config = config
        self.loss_config = loss_config
        keras.utils.set_random_seed(config.seed)
        self.model = lolnerf_model.LOLNeRF(baseline_model_config(model_config))
        self.model.build_all()
        self.variables = self.model.network_variables + self.model.latent_variables
        self._initial = [v.numpy() for v in self.variables]
        schedule = keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, decay_steps=config.steps, decay_rate=0.1
        )
        self.optimizer = keras.optimizers.Adam(schedule)
        self.optimizer.build(self.variables)
        # One trace for every number of context pixels (k views of a scene), not one per k.
        self._step = tf.function(self._train_step, reduce_retracing=True)
        self._fitted = inversion.HeldoutPSNR(self.model, [], None)

    def _train_step(self, pool, index):
        config = self.config
        size = tf.shape(pool["rgb"])[0]
        seed = tf.stack([tf.constant(config.seed, tf.int32), tf.cast(index, tf.int32)])
        ray_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        pick = tf.random.stateless_uniform([config.rays], ray_seed, maxval=size, dtype=tf.int32)
        batch = {k: tf.gather(v, pick) for k, v in pool.items()}
        batch["latent_id"] = tf.zeros([config.rays], tf.int64)
        with tf.GradientTape() as tape:
            render = self.model(batch, training=True, seed=jitter_seed)
            loss, _ = losses.total_loss(render, batch, self.loss_config)
        gradients = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(gradients, self.variables))
        return loss

    def reset(self) -> None:
        """The seeded initial weights, fresh optimiser moments, step 0."""
        for variable, value in zip(self.variables, self._initial):
            variable.assign(value)
        for variable in self.optimizer.variables:
            variable.assign(tf.zeros_like(variable))

    def fit(self, views: list[dict]) -> dict:
        """Trains on one scene's views (after `reset`); the model then renders that scene.

        Args:
          views: the scene's context views (`scenes.load_scenes` dicts).

        Returns:
          stats: steps, seconds, loss_first, loss_last, fitted_psnr (PSNR of every training
          pixel at the end, no jitter, dB).
        """
        self.reset()
        pool = inversion.view_rays(views)
        tensors = {k: tf.constant(v) for k, v in pool.items()}
        history = []
        start = time.perf_counter()
        for index in range(self.config.steps):
            history.append(float(self._step(tensors, tf.constant(index))))
        seconds = time.perf_counter() - start
        tenth = max(1, len(history) // 10)
        return {
            "steps": self.config.steps,
            "seconds": seconds,
            "loss_first": float(np.mean(history[:tenth])),
            "loss_last": float(np.mean(history[-tenth:])),
            "fitted_psnr": self._fitted.score(self.latent[None], pool),
        }

    @property
    def latent(self) -> np.ndarray:
        """`[D]` the one row of the latent table (the code the model renders the scene with)."""
        return self.model.latent_table.embeddings.numpy()[0]
