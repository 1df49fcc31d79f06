"""NeRF-VAE as a model family of the engine (`tfglo.engine.family.ModelFamily`).

Config sections: "model" (`nerf_vae.config.NeRFVAEConfig`), "loss" (`ObjectiveConfig`), "train"
(`NeRFVAETrainConfig`, the engine's `TrainConfig` plus the encoder's learning rate) and "data"
(`data.scene_batches.SceneBatchConfig`). Variable groups: "encoder" (the view encoder, Adam at
`encoder_learning_rate`) and "decoder" (the conditioned fields, Adam at `network_learning_rate`),
both with the run's exponential decay; checkpoints therefore hold `encoder_optimizer` and
`decoder_optimizer`. Loss: the negative ELBO of `nerf_vae.objective` on scene batches of the
dataset directory (`data.scene_batches.train_dataset`); the KL warm-up reads the step from the
trainer's seed ([run seed x replica, step], the engine's contract). Image summaries:
`nerf_vae.summaries`; serving: `nerf_vae.serving`; evaluation: `nerf_vae.evaluation`.

Flags (`flag_spec`, `configs_from_flags`): every field of the four sections is a `tfglo.train`
flag. The decoder's flags have LOLNeRF's names (`--fg_width`, `--num_coarse`, `--background`,
`--mask_weight`, ...), so flagfiles read alike; one flag sets what must agree: `--latent_dim`
(the encoder's latent, which the decoder is built for) and `--encoder_image_size` (the encoder's
input and the scene batches' context size). From the dataset: the scene radius, and the constant
background colour when dataset.json records one (`--dataset_background`).

`FAMILY` is the instance `tfglo.MODEL_FAMILIES["nerf_vae"]` names.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfglo.data import pipeline, scene_batches
from tfglo.engine import family as family_lib
from tfglo.engine import trainer as trainer_lib
from tfglo.nerf import config as nerf_config
from tfglo.nerf_vae import config as config_lib
from tfglo.nerf_vae import encoder as encoder_lib
from tfglo.nerf_vae import objective
from tfglo.utils import configs as configs_lib

SECTIONS = {
    "model": config_lib.NeRFVAEConfig,
    "loss": config_lib.ObjectiveConfig,
    "train": config_lib.NeRFVAETrainConfig,
    "data": scene_batches.SceneBatchConfig,
}

_NAMING = {
    encoder_lib.EncoderConfig: configs_lib.FlagNames(
        prefix="encoder_", names={"latent_dim": "latent_dim"}
    ),
    nerf_config.ForegroundConfig: configs_lib.FlagNames(prefix="fg_"),
    nerf_config.BackgroundConfig: configs_lib.FlagNames(
        prefix="bg_", names={"enabled": "background", "dataset_background": "dataset_background"}
    ),
    config_lib.NeRFVAETrainConfig: configs_lib.FlagNames(
        names={"decay_rate": "lr_decay_rate", "decay_steps": "lr_decay_steps"},
        choices={"strategy": trainer_lib.STRATEGIES},
        # LOLNeRF's latent-table settings: NeRF-VAE has no table.
        skip=("latent_learning_rate", "latent_optimizer", "summary_yaw", "eval_every"),
    ),
    scene_batches.SceneBatchConfig: configs_lib.FlagNames(
        names={"verify": "verify_data", "image_size": "encoder_image_size"}
    ),
}
_SHARED = ("seed", "scene_radius", "encoder_image_size")
_DEFAULTS_FROM = {"scene_radius": "dataset.json's scene_radius, else 1"}

# The flags of a NeRF-VAE run (`tfglo.train --model=nerf_vae`), derived from the sections.
FLAG_SPEC = configs_lib.ConfigFlags(
    "tfglo.train (nerf_vae)",
    SECTIONS,
    naming=_NAMING,
    shared=_SHARED,
    defaults_from=_DEFAULTS_FROM,
)
# The train app's own flags, which a flagfile may hold too (read and dropped by
# `flagfile_values`).
_APP_FLAGS = ("model", "dataset", "run_dir")
_FILE_SPEC = configs_lib.ConfigFlags(
    "tfglo.train (nerf_vae)",
    SECTIONS,
    naming=_NAMING,
    shared=_SHARED,
    defaults_from=_DEFAULTS_FROM,
    extra=tuple(configs_lib.Flag(name, "string", None, "App flag.") for name in _APP_FLAGS),
)


def flagfile_values(flagfile=None, **overrides) -> dict:
    """NeRF-VAE's flag values from a flagfile (e.g. flags/nerf_vae_demo.cfg) and overrides,
    as `tfglo.train --model=nerf_vae --flagfile=FILE` reads them; the app's own flags in the
    file (--model, --dataset, --run_dir) are dropped.

    Raises:
      ValueError: an unknown flag or an unparsable value (naming the file and line).
    """
    values = _FILE_SPEC.flagfile_values(flagfile, **overrides)
    return {k: v for k, v in values.items() if k not in _APP_FLAGS}


class NeRFVAEFamily(family_lib.ModelFamily):
    """NeRF-VAE: a view encoder and the conditioned fields, trained on the ELBO (module doc)."""

    name = "nerf_vae"
    sections = SECTIONS
    checkpoint_sections = ("model",)

    # -- configuration ------------------------------------------------------------------------

    def flag_spec(self) -> configs_lib.ConfigFlags:
        """The `ConfigFlags` of the four sections (the train app adds --dataset, --run_dir)."""
        return FLAG_SPEC

    def configs_from_flags(
        self, values: Mapping[str, Any], dataset_metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The four sections from flag values and the training dataset's dataset.json.

        The scene radius defaults to dataset.json's; with `--dataset_background` (default) a
        dataset whose dataset.json records a `constant_background` colour gets that colour as
        the renderer's constant background and no background field.

        Raises:
          ValueError: invalid values (the message names the setting), or the sizes of encoder
            and scene batches disagree.
        """
        radius = values.get("scene_radius") or pipeline.scene_radius(dict(dataset_metadata))
        built = FLAG_SPEC.build(dict(values, scene_radius=float(radius)))
        model = built["model"]
        background, render = nerf_config.with_dataset_background(
            model.background, model.render, dataset_metadata
        )
        model = dataclasses.replace(model, background=background, render=render)
        built["model"] = model
        return self.check_configs(built)

    def check_configs(self, configs):
        configs = super().check_configs(configs)
        config_lib.check_sizes(configs["model"], configs["data"])
        return configs

    # -- the model and its training -----------------------------------------------------------

    def build_model(self, configs):
        from tfglo.nerf_vae import model as model_lib

        model = model_lib.NeRFVAE(configs["model"])
        model.build_all()
        return model

    def variable_groups(self, model, configs) -> dict[str, family_lib.VariableGroup]:
        train = configs["train"]
        adam = {
            "beta_1": train.adam_beta1,
            "beta_2": train.adam_beta2,
            "epsilon": train.adam_epsilon,
        }

        def settings(learning_rate):
            return family_lib.OptimizerSettings(
                learning_rate, train.decay_rate, train.decay_steps, None, adam
            )

        return {
            "encoder": family_lib.VariableGroup(
                model.encoder_variables, settings(train.encoder_learning_rate)
            ),
            "decoder": family_lib.VariableGroup(
                model.decoder_variables, settings(train.network_learning_rate)
            ),
        }

    def train_loss(self, model, batch, configs, seed):
        from tfglo.nerf_vae import model as model_lib

        # The engine's seed is (run seed x replica, step): its second entry is the step. The
        # latent noise is keyed by (run seed, step, object id), not by replica, so a step on
        # several replicas draws what one device would.
        step = seed[1]
        noise = model_lib.scene_noise(
            batch["object_id"], configs["train"].seed, step, model.latent_dim
        )
        render = model(batch, training=True, seed=seed, noise=noise)
        loss, terms = objective.scene_objective(render, batch, configs["loss"], step=step)
        return loss, terms, render

    def dataset_fn(self, configs, dataset):
        data_config = configs["data"]

        def dataset_fn(context, start_step):
            return scene_batches.train_dataset(dataset, data_config, context, start_step)

        return dataset_fn

    def image_summaries(self, configs, dataset):
        from tfglo.nerf_vae import summaries

        train = configs["train"]
        if not (train.image_summary_every and train.summary_images) or dataset is None:
            return None
        return summaries.NeRFVAEImageSummaries(
            dataset,
            num_scenes=train.summary_images,
            context_views=configs["data"].context_views,
            num_novel_views=train.summary_novel_views,
            prior_samples=train.summary_prior_samples,
            seed=train.seed,
        )

    def check_dataset(self, configs, dataset_metadata: Mapping[str, Any]) -> None:
        """Refuses single-view data and objects with fewer training views than a scene needs
        (`scene_batches.check_scenes`: a `DatasetError` naming the objects)."""
        scenes = scene_batches.scene_records(dict(dataset_metadata), "train")
        scene_batches.check_scenes(scenes, configs["data"], where="the training dataset")

    # -- inference ----------------------------------------------------------------------------

    def serving_module(self, model, configs, export_config):
        from tfglo.nerf_vae import serving

        return serving.serving_module(model, export_config)

    def evaluate(self, run, dataset, **options):
        """`nerf_vae.evaluation.evaluate_run(run, dataset, **options)` (its report dict)."""
        from tfglo.nerf_vae import evaluation

        return evaluation.evaluate_run(run, dataset, **options)


FAMILY = NeRFVAEFamily()
