"""Configuration of the shared NeRF parts: fields, volume rendering, loss weights.

Plain frozen dataclasses (DESIGN.md section 5): library code takes them, the apps build them from
flags derived from their fields (`tfglo.utils.configs.ConfigFlags`), and
`tfglo.utils.configs.to_dict` / `from_dict` turn them into the JSON of a run directory's
config.json and back.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class ForegroundConfig:
    """Foreground field f(x, z) -> (density, rgb).

    Attributes:
      width: units per hidden layer.
      depth: number of hidden layers.
      skip_layer: index of the hidden layer whose input gets [encoding, latent] concatenated again.
      num_octaves: positional-encoding octaves L (frequencies 2^0 .. 2^(L-1)) for positions.
      density_bias: added to the raw density before softplus (negative starts the field empty).
    """

    width: int = 256
    depth: int = 8
    skip_layer: int = 4
    num_octaves: int = 8
    density_bias: float = -1.0


@dataclasses.dataclass(frozen=True)
class BackgroundConfig:
    """Background field b(d, z) -> rgb: an environment at infinity, no density.

    Attributes:
      enabled: when False the background is a constant colour (`RenderConfig.background_color`).
      dataset_background: when the training dataset records one constant background colour
        (dataset.json `constant_background`), render that colour behind the foreground instead
        of learning a background field (set when a run's configs are made from flags).
      width: units per hidden layer.
      depth: number of hidden layers.
      num_octaves: positional-encoding octaves of the unit ray direction.
    """

    enabled: bool = True
    dataset_background: bool = True
    width: int = 128
    depth: int = 4
    num_octaves: int = 4


def with_dataset_background(
    background: BackgroundConfig, render: "RenderConfig", dataset_metadata: Mapping[str, Any]
) -> tuple[BackgroundConfig, "RenderConfig"]:
    """The background and render settings a run trains with on a dataset (both families).

    With `background.dataset_background` and a dataset.json that records a
    `constant_background` colour (a white-background import, the built-in cars), the background
    field is disabled and the renderer composites that colour: a field conditioned on the latent
    can otherwise paint each single training view and leave the foreground empty (issue 15).
    Otherwise both are returned unchanged.

    Raises:
      ValueError: the recorded colour is not 3 numbers in [0, 1].
    """
    colour = dataset_metadata.get("constant_background")
    if not background.dataset_background or colour is None:
        return background, render
    colour = tuple(float(c) for c in colour)
    if len(colour) != 3 or not all(0.0 <= c <= 1.0 for c in colour):
        raise ValueError(f"dataset.json's constant_background must be RGB in [0, 1], got {colour}")
    return (
        dataclasses.replace(background, enabled=False),
        dataclasses.replace(render, background_color=colour),
    )


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Volume rendering settings.

    Attributes:
      num_coarse: stratified samples per ray inside the bounding sphere.
      num_fine: importance samples per ray drawn from the coarse weights (0 disables).
      scene_radius: radius of the bounding sphere around the origin, object units.
      chunk_size: rays per chunk when rendering whole images (bounds peak memory).
      perturb: jitter stratified samples during training (deterministic midpoints otherwise).
      background_color: RGB used when the background field is disabled, in [0, 1].
      accelerate: render whole images (not training batches: the apps' views, evaluation,
        image summaries, the SavedModel's render signatures) with the accelerated renderer
        (`tfglo.nerf.accelerated_renderer`: samples only in occupied cells, early ray
        termination); False renders with the exact brute-force `VolumeRenderer`. The default
        is measured (README: 256 x 256 views of the demo model several times faster, PSNR
        within 0.01 dB of the exact render).
      occupancy_resolution: cells per axis of the per-latent occupancy grid (accelerated only).
        It costs G^3 field evaluations per latent; parts at least one cell (2 r / G) thick are
        kept. 32: cheapest overall on the demo model (32 x 32 to 256 x 256 views); 64 for thin
        structures or many large views of one latent.
      occupancy_threshold: a grid cell is occupied when the foreground density at its centre
        exceeds this, per object unit (accelerated only).
      occupancy_dilation: cells by which the occupied set grows, so thin parts are kept.
      termination_threshold: a ray stops being evaluated once its transmittance falls below this
        (accelerated only).
      march_group_size: samples per ray evaluated between two termination checks.
      accelerated_sampling: "importance" (the exact renderer's coarse strata in occupied space,
        then `num_fine` importance samples) or "dense" (one pass of num_coarse + num_fine strata
        over the chord, marched through occupied space; no fine pass). Accelerated only.
      precision: arithmetic of the field MLPs in training and rendering: "float32" or
        "mixed_bfloat16" (bfloat16 matmuls, float32 variables); compositing is always float32.
    """

    num_coarse: int = 64
    num_fine: int = 64
    scene_radius: float = 1.0
    chunk_size: int = 4096
    perturb: bool = True
    background_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    accelerate: bool = True
    occupancy_resolution: int = 32
    occupancy_threshold: float = 0.01
    occupancy_dilation: int = 1
    termination_threshold: float = 1e-3
    march_group_size: int = 4
    accelerated_sampling: str = "dense"
    precision: str = "float32"


# The RenderConfig fields that choose how whole images are rendered, not what the model is: the
# rendering apps (render, evaluate, export) take them as flags that override the run's
# config.json (`tfglo.engine.views.RENDER_FLAG_NAMING`).
INFERENCE_RENDER_FIELDS = (
    "accelerate",
    "occupancy_resolution",
    "occupancy_threshold",
    "occupancy_dilation",
    "termination_threshold",
    "march_group_size",
    "accelerated_sampling",
)


# Hard-surface prior: how the per-sample penalties of a batch become one number, and which
# sample weights it sees (see `tfglo.nerf.losses.hard_surface_loss`).
HARD_SURFACE_REDUCTIONS = ("mean", "per_ray_sum", "per_ray_shape")
HARD_SURFACE_SAMPLES = ("composite", "coarse")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms: L = MSE(rgb) + mask * MSE(alpha, mask) + hard * L_hard.

    Defaults by measurement (issue 15, README "Method choices"): the mask weight is the LOLNeRF
    authors' 1.0 (at 0.1 a background field can paint each single view of a white-background
    class and leave the foreground empty); the hard-surface loss is off, since no reduction and
    weight tried changed hardness or held-out quality for the better on the demo heads.

    Attributes:
      mask_weight: lambda_mask; 0 disables the mask loss.
      hard_surface_weight: lambda_hard; 0 disables the hard-surface loss.
      hard_surface_reduction: "per_ray_sum" sums the per-sample penalty over a ray's samples and
        averages over rays (a ray's penalty does not shrink as samples are added); "mean"
        averages over every sample (the paper's formula as tfglo first had it: 1/S as strong);
        "per_ray_shape" applies the per-ray sum to each ray's weights divided by its opacity
        (where along the ray it ends, not how much), rays weighted by their opacity: it sharpens
        a cloud into a surface without pushing opacity down.
      hard_surface_samples: the weights the prior sees: "composite" (the sorted union of coarse
        and importance samples that makes the pixel) or "coarse" (the stratified pass, evenly
        spaced, so a weight near 1 means a surface thinner than one stratum).
    """

    mask_weight: float = 1.0
    hard_surface_weight: float = 0.0
    hard_surface_reduction: str = "per_ray_sum"
    hard_surface_samples: str = "composite"

    def __post_init__(self):
        if self.hard_surface_reduction not in HARD_SURFACE_REDUCTIONS:
            raise ValueError(
                f"hard_surface_reduction must be one of {HARD_SURFACE_REDUCTIONS}, got "
                f"{self.hard_surface_reduction!r}"
            )
        if self.hard_surface_samples not in HARD_SURFACE_SAMPLES:
            raise ValueError(
                f"hard_surface_samples must be one of {HARD_SURFACE_SAMPLES}, got "
                f"{self.hard_surface_samples!r}"
            )
        if self.mask_weight < 0 or self.hard_surface_weight < 0:
            raise ValueError(
                f"loss weights must be >= 0, got mask_weight={self.mask_weight}, "
                f"hard_surface_weight={self.hard_surface_weight}"
            )
