"""Configuration of the LOLNeRF model: latent table, fields, renderer."""

import dataclasses

from tfglo.nerf.config import BackgroundConfig, ForegroundConfig, RenderConfig


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The LOLNeRF model: latent table, fields, renderer.

    Attributes:
      num_latents: rows of the latent table (one per image, or per object in multi-view data).
      latent_dim: size of each latent code.
      latent_init_std: standard deviation of the table's normal initialisation (0: zeros).
      foreground, background, render: sub-configurations.
    """

    num_latents: int = 1
    latent_dim: int = 64
    latent_init_std: float = 0.01
    foreground: ForegroundConfig = dataclasses.field(default_factory=ForegroundConfig)
    background: BackgroundConfig = dataclasses.field(default_factory=BackgroundConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
