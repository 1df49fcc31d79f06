"""Configuration of NeRF-VAE: the model (encoder + decoder), the objective, its training extras.

Plain frozen dataclasses (DESIGN.md section 5). The sections of a NeRF-VAE run
(`tfglo.nerf_vae.family`): "model" (`NeRFVAEConfig`), "loss" (`ObjectiveConfig`), "train"
(`NeRFVAETrainConfig`, the engine's `TrainConfig` plus the encoder's learning rate and the prior
samples of the image summaries) and "data" (`tfglo.data.scene_batches.SceneBatchConfig`).

One setting, one place: the latent size is `EncoderConfig.latent_dim` (the decoder's fields are
built for it) and the context views' size is `EncoderConfig.image_size`, which the scene-batch
configuration must repeat (`check_sizes`; the train flags set both with one flag).
"""

import dataclasses
from typing import Literal

from tfglo.engine import trainer
from tfglo.nerf import config as nerf_config
from tfglo.nerf_vae.encoder import EncoderConfig
from tfglo.nerf_vae.posterior import COMBINE_METHODS


@dataclasses.dataclass(frozen=True)
class NeRFVAEConfig:
    """The NeRF-VAE model: view encoder, posterior over a scene, conditioned fields, renderer.

    Attributes:
      encoder: the view encoder (its latent_dim is the scene latent's size, its image_size the
        context views').
      combine: how the Gaussians of a scene's context views become one: "average" (of their
        parameters, NeRF-VAE's) or "product" (product of experts).
      foreground, background, render: the decoder: the shared conditioned fields and volume
        renderer of `tfglo.nerf`.
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    combine: Literal["average", "product"] = "average"
    foreground: nerf_config.ForegroundConfig = dataclasses.field(
        default_factory=nerf_config.ForegroundConfig
    )
    background: nerf_config.BackgroundConfig = dataclasses.field(
        default_factory=nerf_config.BackgroundConfig
    )
    render: nerf_config.RenderConfig = dataclasses.field(default_factory=nerf_config.RenderConfig)

    def __post_init__(self):
        if self.combine not in COMBINE_METHODS:
            raise ValueError(f"combine must be one of {COMBINE_METHODS}, got {self.combine!r}")

    @property
    def latent_dim(self) -> int:
        """The scene latent's size (the encoder's)."""
        return self.encoder.latent_dim


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """The negative ELBO and its options (`tfglo.nerf_vae.objective`).

    Per scene: -ELBO = -log p(target pixels | z) + KL(q(z | context views) || N(0, I)), the
    log-likelihood a Gaussian of fixed scale per colour channel, summed over the drawn rays and
    rescaled to the scene's whole target images. The training loss divides it by the number of
    target colour values (a per-value scale for the optimiser; the KL weight keeps its meaning at
    any ray batch and image size).

    Attributes:
      likelihood_scale: standard deviation of the Gaussian pixel likelihood, in sRGB units
        ([0, 1] images); smaller trusts the pixels more relative to the KL.
      kl_weight: weight of the KL term after the warm-up (1: the ELBO).
      kl_warmup_steps: the KL weight rises linearly from 0 to kl_weight over this many steps
        (0: no warm-up).
      free_bits: per-dimension floor of the KL term, nats (free bits: a dimension's KL below it
        is not penalised); 0 disables.
      active_threshold: a latent dimension counts as active in a scene when its KL exceeds this
        many nats (the kl_active_dims summary).
      mask_weight: lambda_mask; 0 disables the mask loss.
      hard_surface_weight: lambda_hard; 0 disables the hard-surface loss.
    """

    likelihood_scale: float = 0.1
    kl_weight: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    active_threshold: float = 0.01
    mask_weight: float = 1.0
    hard_surface_weight: float = 0.0

    def __post_init__(self):
        if not self.likelihood_scale > 0:
            raise ValueError(f"likelihood_scale must be > 0, got {self.likelihood_scale}")
        for name in ("kl_weight", "free_bits", "active_threshold", "mask_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.hard_surface_weight < 0:
            raise ValueError(f"hard_surface_weight must be >= 0, got {self.hard_surface_weight}")
        if self.kl_warmup_steps < 0:
            raise ValueError(f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")


@dataclasses.dataclass(frozen=True)
class NeRFVAETrainConfig(trainer.TrainConfig):
    """The engine's `TrainConfig` plus NeRF-VAE's own optimiser and summary settings.

    `network_learning_rate` is the decoder's (the fields', as in LOLNeRF); the latent table's
    settings (`latent_learning_rate`, `latent_optimizer`) are unused: NeRF-VAE has no table.
    `summary_images` counts the training scenes of the image summaries, `summary_novel_views`
    their novel views.

    Attributes:
      encoder_learning_rate: Adam learning rate of the encoder at step 0 (its own optimiser, the
        same decay as the decoder's).
      summary_prior_samples: scenes drawn from the prior N(0, I) in the image summaries.
    """

    encoder_learning_rate: float = 5e-4
    summary_prior_samples: int = 4

    def __post_init__(self):
        super().__post_init__()
        if not self.encoder_learning_rate > 0:
            raise ValueError(f"encoder_learning_rate must be > 0, got {self.encoder_learning_rate}")
        if self.summary_prior_samples < 0:
            raise ValueError(
                f"summary_prior_samples must be >= 0, got {self.summary_prior_samples}"
            )


def check_sizes(model: NeRFVAEConfig, data) -> None:
    """Raises ValueError when the scene batches' context size is not the encoder's.

    Args:
      model: the model configuration.
      data: the `SceneBatchConfig`.
    """
    if data.image_size != model.encoder.image_size:
        raise ValueError(
            f"the scene batches resize context views to {data.image_size} but the encoder takes "
            f"{model.encoder.image_size} x {model.encoder.image_size} "
            "(set both with --encoder_image_size)"
        )
