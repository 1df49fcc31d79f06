"""LOLNeRF as a model family of the engine (`tfglo.engine.family.ModelFamily`).

Config sections: "model" (`lolnerf.config.ModelConfig`), "loss" (`nerf.config.LossConfig`),
"train" (`engine.trainer.TrainConfig`), "data" (`data.pipeline.RayBatchConfig`). Variable
groups: "network" (the fields' weights, Adam) and "latent" (the latent table, `latents.LazyAdam`
or Adam per `TrainConfig.latent_optimizer`), each with its own learning rate and the shared
exponential decay; checkpoints therefore hold `network_optimizer` and `latent_optimizer`, as they
always have. Loss: `nerf.losses.total_loss` (colour MSE + mask + hard surface) on random ray
batches of the dataset directory (`data.pipeline.train_dataset`). Serving: `lolnerf.serving`.
Latents of new images (`tfglo.lift`): test-time optimisation, `engine.inversion.invert`.

Flags (`python -m tfglo.train --model=lolnerf`, the default): every field of the four sections
(`FLAG_SPEC`), named as the field except for the prefixes ("fg_", "bg_") and the names flagfiles
used before flags were derived; `num_latents` and `scene_radius` default to the dataset's
dataset.json (`configs_from_flags`).

`FAMILY` is the instance `tfglo.MODEL_FAMILIES["lolnerf"]` names; `lolnerf_trainer` builds a
`Trainer` from the four config objects.
"""

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from tfglo.data import pipeline
from tfglo.engine import family as family_lib
from tfglo.engine import inversion, metrics
from tfglo.engine import trainer as trainer_lib
from tfglo.lolnerf import config as model_config_lib
from tfglo.lolnerf import latents, serving, summaries
from tfglo.lolnerf import model as model_lib
from tfglo.nerf import config as config_lib
from tfglo.nerf import losses
from tfglo.utils import configs as configs_lib

# The settings: every field of the four sections is a flag (tfglo.utils.configs), named as the
# field except for the prefixes and the flag names that flagfiles used before flags were derived.
FLAG_SPEC = configs_lib.ConfigFlags(
    "lolnerf",
    {
        "model": model_config_lib.ModelConfig,
        "loss": config_lib.LossConfig,
        "train": trainer_lib.TrainConfig,
        "data": pipeline.RayBatchConfig,
    },
    naming={
        config_lib.ForegroundConfig: configs_lib.FlagNames(prefix="fg_"),
        config_lib.BackgroundConfig: configs_lib.FlagNames(
            prefix="bg_",
            names={"enabled": "background", "dataset_background": "dataset_background"},
        ),
        pipeline.RayBatchConfig: configs_lib.FlagNames(names={"verify": "verify_data"}),
    },
    shared=("seed", "scene_radius"),
    defaults_from={
        "num_latents": "dataset.json's num_latents",
        "scene_radius": "dataset.json's scene_radius, else 1",
    },
)


class LOLNeRFFamily(family_lib.ModelFamily):
    """LOLNeRF: a latent table and conditioned fields, trained by GLO (module docstring)."""

    name = "lolnerf"
    display_name = "LOLNeRF"
    sections = {
        "model": model_config_lib.ModelConfig,
        "loss": config_lib.LossConfig,
        "train": trainer_lib.TrainConfig,
        "data": pipeline.RayBatchConfig,
    }
    checkpoint_sections = ("model",)

    def flag_spec(self) -> configs_lib.ConfigFlags:
        return FLAG_SPEC

    def configs_from_flags(self, values, dataset_metadata) -> dict[str, Any]:
        """The four sections from flag values; the latent table and the scene radius default to
        the dataset's (dataset.json's num_latents; its scene_radius, else 1). With
        `--dataset_background` (default) a dataset.json that records a `constant_background`
        colour gets that colour behind the foreground and no background field
        (`nerf.config.with_dataset_background`).

        Raises:
          ValueError: invalid values (the message names the setting), no num_latents anywhere,
            or a latent table smaller than the dataset's latent ids.
        """
        dataset_latents = int(dataset_metadata.get("num_latents") or 0)
        num_latents = values["num_latents"] or dataset_latents
        if num_latents < 1:
            raise ValueError("dataset.json has no num_latents: pass --num_latents")
        if num_latents < dataset_latents:
            raise ValueError(
                f"--num_latents={num_latents} is smaller than the dataset's {dataset_latents}"
            )
        radius = float(values["scene_radius"] or pipeline.scene_radius(dataset_metadata))
        values = dict(values, num_latents=num_latents, scene_radius=radius)
        built = FLAG_SPEC.build(values)
        model = built["model"]
        background, render = config_lib.with_dataset_background(
            model.background, model.render, dataset_metadata
        )
        built["model"] = dataclasses.replace(model, background=background, render=render)
        return self.check_configs(built)

    def describe(self, configs) -> str:
        data = configs["data"]
        rays = data.images_per_batch * data.rays_per_image
        return f"{configs['model'].num_latents} latents, {rays} rays/step"

    def build_model(self, configs) -> model_lib.LOLNeRF:
        model = model_lib.LOLNeRF(configs["model"])
        model.build_all()
        return model

    def variable_groups(self, model, configs) -> dict[str, family_lib.VariableGroup]:
        train = configs["train"]
        adam = {
            "beta_1": train.adam_beta1,
            "beta_2": train.adam_beta2,
            "epsilon": train.adam_epsilon,
        }

        def settings(learning_rate, optimizer=None):
            return family_lib.OptimizerSettings(
                learning_rate, train.decay_rate, train.decay_steps, optimizer, adam
            )

        latent_optimizer = latents.LazyAdam if train.latent_optimizer == "lazy_adam" else None
        return {
            "network": family_lib.VariableGroup(
                model.network_variables, settings(train.network_learning_rate)
            ),
            "latent": family_lib.VariableGroup(
                model.latent_variables, settings(train.latent_learning_rate, latent_optimizer)
            ),
        }

    # Batch statistics of the foreground split and of hardness (`window_statistics`).
    statistic_terms = (
        "stat_alpha",
        "stat_mask",
        "stat_alpha_mask",
        "stat_fg_rays",
        "stat_fg_hard",
        "stat_fg_max_weight",
    )

    def train_loss(self, model, batch, configs, seed):
        render = model(batch, training=True, seed=seed)
        loss, terms = losses.total_loss(render, batch, configs["loss"])
        if "mask" in batch:
            terms.update(_split_statistics(render, batch["mask"]))
        return loss, terms, render

    def window_statistics(self, means):
        """foreground/coverage (share of the mask the foreground opacity covers),
        foreground/opacity_ratio, foreground/alpha_mean, foreground/mask_mean,
        hardness/hard_fraction (foreground rays, mask > 0.5, whose largest sample weight
        exceeds 0.5) and hardness/max_weight_mean (on foreground rays), over the log window's
        training rays; the coverage warning (`engine.metrics.coverage_warning`) when the
        foreground covers much less than the mask."""
        scalars: dict[str, float] = {}
        mask_mean = means.get("stat_mask", 0.0)
        if mask_mean > 0:
            coverage = means["stat_alpha_mask"] / mask_mean
            scalars["foreground/coverage"] = coverage
            scalars["foreground/opacity_ratio"] = means["stat_alpha"] / mask_mean
        scalars["foreground/alpha_mean"] = means.get("stat_alpha", 0.0)
        scalars["foreground/mask_mean"] = mask_mean
        fg_rays = means.get("stat_fg_rays", 0.0)
        if fg_rays > 0:
            scalars["hardness/hard_fraction"] = means["stat_fg_hard"] / fg_rays
            scalars["hardness/max_weight_mean"] = means["stat_fg_max_weight"] / fg_rays
        warning = metrics.coverage_warning(scalars.get("foreground/coverage", math.nan))
        return scalars, [warning] if warning else []

    def num_rays(self, batch):
        return tf.shape(batch["rgb"])[0]

    def dataset_fn(self, configs, dataset):
        data_config = configs["data"]

        def dataset_fn(context, start_step):
            return pipeline.train_dataset(dataset, data_config, context, start_step=start_step)

        return dataset_fn

    def image_summaries(self, configs, dataset):
        train = configs["train"]
        if not (train.image_summary_every and train.summary_images) or dataset is None:
            return None
        return summaries.LOLNeRFImageSummaries(
            dataset,
            train.summary_images,
            train.summary_novel_views,
            train.summary_yaw,
            configs["model"].render.scene_radius,
        )

    def eval_summaries(self, configs, dataset):
        """Held-out PSNR / SSIM (and mask IoU, coverage, hardness, depth error) of
        `summary_images` eval views (at least 1), or None without an eval split."""
        train = configs["train"]
        if not train.eval_every or dataset is None or not summaries.has_eval_split(dataset):
            return None
        return summaries.LOLNeRFEvalSummaries(dataset, max(train.summary_images, 1))

    def check_dataset(self, configs, dataset_metadata: Mapping[str, Any]) -> None:
        num_latents = int(dataset_metadata.get("num_latents") or 0)
        rows = configs["model"].num_latents
        if rows < num_latents:
            raise ValueError(
                f"the latent table has {rows} rows, the dataset {num_latents} latent ids"
            )

    def serving_module(self, model, configs, export_config) -> serving.ServingModule:
        return serving.serving_module(model, export_config)

    def infer_latents(
        self, model, configs, images, intrinsics, world_to_camera, masks=None, options=None
    ):
        """Test-time optimisation (`engine.inversion.invert`): each code starts at the latent
        table's mean and is fitted to its image's rays, the network frozen (unless
        `options.finetune_weights`, which changes the model in place)."""
        del configs
        options = options or inversion.InversionConfig()
        codes, stats = inversion.invert(model, images, intrinsics, world_to_camera, masks, options)
        method = "test-time optimisation from the latent-table mean"
        if options.finetune_weights:
            method += ", network weights fine-tuned"
        return codes, {"method": method, **stats}


def _split_statistics(render: dict, mask: tf.Tensor) -> dict[str, tf.Tensor]:
    """Means over a ray batch (no gradient) that `window_statistics` turns into coverage and
    hardness: alpha, mask, alpha * mask, foreground rays (mask > 0.5), foreground rays with
    max weight > 0.5, and the max weight summed on foreground rays (all divided by N)."""
    alpha = tf.stop_gradient(tf.cast(render["alpha"], tf.float32))
    max_weight = tf.stop_gradient(tf.cast(render["max_weight"], tf.float32))
    mask = tf.cast(mask, tf.float32)
    foreground = tf.cast(mask > metrics.MASK_THRESHOLD, tf.float32)
    hard = tf.cast(max_weight > metrics.HARD_WEIGHT, tf.float32)
    return {
        "stat_alpha": tf.reduce_mean(alpha),
        "stat_mask": tf.reduce_mean(mask),
        "stat_alpha_mask": tf.reduce_mean(alpha * mask),
        "stat_fg_rays": tf.reduce_mean(foreground),
        "stat_fg_hard": tf.reduce_mean(foreground * hard),
        "stat_fg_max_weight": tf.reduce_mean(foreground * max_weight),
    }


FAMILY = LOLNeRFFamily()


def lolnerf_trainer(
    dataset_path: os.PathLike | str,
    run_dir: os.PathLike | str,
    model_config: model_config_lib.ModelConfig,
    loss_config: config_lib.LossConfig,
    train_config: trainer_lib.TrainConfig,
    data_config: pipeline.RayBatchConfig,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = trainer_lib.print_line,
) -> trainer_lib.Trainer:
    """A `Trainer` for LOLNeRF on a dataset directory (restores run_dir's newest checkpoint).

    Args:
      dataset_path: the training dataset directory (tfglo.prepare).
      run_dir: the run directory.
      model_config: num_latents must cover the dataset's latent ids.
      loss_config, train_config: the loss weights; the optimisation and run settings.
      data_config: the global batch: images_per_batch x rays_per_image.
      strategy: default `make_strategy(train_config.strategy, train_config.tpu)`.
      log: receives console lines.
    """
    configs = {"model": model_config, "loss": loss_config, "train": train_config}
    configs["data"] = data_config
    return trainer_lib.Trainer(FAMILY, configs, run_dir, dataset_path, strategy=strategy, log=log)
