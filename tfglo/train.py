"""`python -m tfglo.train`: trains LOLNeRF on a dataset directory (DESIGN.md sections 2 and 6).

    python -m tfglo.train --flagfile=flags/demo.cfg --dataset=DATA --run_dir=RUN [--num_steps=N]

Every model, loss, optimiser, data and schedule setting is a flag with a default; a flagfile
sets many at once, and flags given AFTER --flagfile on the command line override it (absl reads
arguments in order). The number of latents comes from the dataset's dataset.json. The resolved
configuration goes to RUN/config.json, checkpoints to RUN/checkpoints, TensorBoard logs to
RUN/tensorboard. Running the same command again resumes from the newest checkpoint; a larger
--num_steps continues a finished run.

Exit status: 0 when the run reached --num_steps; 1 on bad input (dataset, run directory, flag
values) or when the loss became non-finite (the message names the last good checkpoint); 130
after Ctrl-C or SIGTERM, which first save a checkpoint of the current step (single-worker runs).
"""

import dataclasses
import os
import signal
import sys

from absl import app, flags, logging

from tfglo.data import dataset_dir, pipeline
from tfglo.engine import family as family_lib
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import trainer
from tfglo.lolnerf import config as model_config_lib
from tfglo.nerf import config as config_lib
from tfglo.utils import configs

FLAGS = flags.FLAGS

# The settings: every field of these configs is a flag (tfglo.utils.configs), named as the field
# except for the prefixes and the flag names that flagfiles used before flags were derived.
FLAG_SPEC = configs.ConfigFlags(
    "tfglo.train",
    {
        "model": model_config_lib.ModelConfig,
        "loss": config_lib.LossConfig,
        "train": trainer.TrainConfig,
        "data": pipeline.RayBatchConfig,
    },
    naming={
        config_lib.ForegroundConfig: configs.FlagNames(prefix="fg_"),
        config_lib.BackgroundConfig: configs.FlagNames(
            prefix="bg_", names={"enabled": "background"}
        ),
        trainer.TrainConfig: configs.FlagNames(
            names={"decay_rate": "lr_decay_rate", "decay_steps": "lr_decay_steps"},
            choices={"strategy": trainer.STRATEGIES, "latent_optimizer": trainer.LATENT_OPTIMIZERS},
        ),
        pipeline.RayBatchConfig: configs.FlagNames(names={"verify": "verify_data"}),
    },
    shared=("seed", "scene_radius"),
    defaults_from={
        "num_latents": "dataset.json's num_latents",
        "scene_radius": "dataset.json's scene_radius, else 1",
    },
    extra=(
        configs.Flag("dataset", "string", None, "Dataset directory (python -m tfglo.prepare)."),
        configs.Flag(
            "run_dir", "string", None, "Run directory: config.json, checkpoints/, tensorboard/."
        ),
        # vae2 branch: the model-family switch (see the marked block below).
        configs.Flag(
            "model", "enum", "lolnerf", "Model family.", enum_values=("lolnerf", "nerf_vae")
        ),
    ),
)
# ---- BEGIN vae2 branch: a minimal --model switch (the lead replaces this block with the
# family-generic train app). Every family's flags are defined (NeRF-VAE's from its family's
# `flag_spec()`; shared names agree in type, default and meaning), `--model` picks the family and
# `build_configs` asks it for its configs (`configs_from_flags`).
_FAMILY_SPECS = {"lolnerf": FLAG_SPEC, "nerf_vae": family_lib.get_family("nerf_vae").flag_spec()}
_UNION: dict[str, configs.Flag] = {}
for _spec in _FAMILY_SPECS.values():
    for _name, _flag in _spec.flags.items():
        _UNION.setdefault(_name, dataclasses.replace(_flag, fields=()))
_ALL_FLAGS = configs.ConfigFlags("tfglo.train", {}, extra=tuple(_UNION.values()))
# ---- END vae2 branch block.
# Names of this app's flags (config.json records their values). Defined at import: in-process
# users (tests, ablations) parse the global FLAGS of this module.
FLAG_NAMES = _ALL_FLAGS.names
_ALL_FLAGS.define(FLAGS)


def flag_values() -> dict:
    """The values of this app's flags (JSON-able)."""
    return _ALL_FLAGS.values(FLAGS)


def flagfile_values(flagfile: str | os.PathLike | None = None, **overrides) -> dict:
    """This app's flag values from a flagfile and overrides, without touching the global FLAGS.

    For programs that train in-process (the demo, ablations): the same values as
    `python -m tfglo.train --flagfile=FILE --name=value ...` would use. See
    `configs.ConfigFlags.flagfile_values`.
    """
    return _ALL_FLAGS.flagfile_values(flagfile, **overrides)


def build_configs(values: dict, metadata: dict):
    """(model, loss, train, data) configs from flag values and the dataset's dataset.json.

    Raises:
      ValueError: invalid values (the message names the setting), or a latent table smaller than
        the dataset's latent ids.
    """
    if values.get("model", "lolnerf") != "lolnerf":  # vae2 branch: the family's own configs
        return _family_configs(values, metadata)
    dataset_latents = int(metadata.get("num_latents") or 0)
    num_latents = values["num_latents"] or dataset_latents
    if num_latents < 1:
        raise ValueError("dataset.json has no num_latents: pass --num_latents")
    if num_latents < dataset_latents:
        raise ValueError(
            f"--num_latents={num_latents} is smaller than the dataset's {dataset_latents}"
        )
    radius = float(values["scene_radius"] or pipeline.scene_radius(metadata))
    built = FLAG_SPEC.build(dict(values, num_latents=num_latents, scene_radius=radius))
    return built["model"], built["loss"], built["train"], built["data"]


def _family_configs(values: dict, metadata: dict):
    """vae2 branch: (model, loss, train, data) of the family `values["model"]` names."""
    built = family_lib.get_family(values["model"]).configs_from_flags(values, metadata)
    return built["model"], built["loss"], built["train"], built["data"]


def train(
    dataset: str | os.PathLike,
    run_dir: str | os.PathLike,
    model_config: model_config_lib.ModelConfig,
    loss_config: config_lib.LossConfig,
    train_config: trainer.TrainConfig,
    data_config: pipeline.RayBatchConfig,
    flags_used: dict | None = None,
    strategy=None,
    log=trainer.print_line,
    model: str = "lolnerf",
) -> trainer.TrainResult:
    """Trains LOLNeRF: checks/writes run_dir/config.json, resumes, trains to num_steps.

    Args:
      dataset: the dataset directory.
      run_dir: the run directory (created; resumed when it holds checkpoints).
      model_config, loss_config, train_config, data_config: the resolved configurations.
      flags_used: recorded in config.json.
      strategy: default `trainer.make_strategy(train_config.strategy, train_config.tpu)`; made
        before any other TensorFlow op (a MultiWorkerMirroredStrategy must be).
      log: receives console lines.
      model: the model family (vae2 branch: --model).

    Raises:
      dataset_dir.DatasetError: the dataset directory is invalid.
      run_dir.RunDirError: run_dir holds a run with another model configuration.
      trainer.NonFiniteLossError: the loss became NaN or infinite.
    """
    import keras

    family = family_lib.get_family(model)
    configs = family.check_configs(
        {"model": model_config, "loss": loss_config, "train": train_config, "data": data_config}
    )
    strategy = strategy or trainer.make_strategy(train_config.strategy, train_config.tpu)
    metadata = dataset_dir.read_metadata(dataset)
    family.check_dataset(configs, metadata)
    run_dir_lib.check_resume(run_dir, family, configs)
    if trainer.is_chief(strategy):
        values = run_dir_lib.make_config(
            family, configs, os.path.abspath(dataset), metadata, flags_used
        )
        run_dir_lib.write_config(run_dir, values)
    # Deterministic initialisation (Keras initialisers draw from the global seed).
    keras.utils.set_random_seed(train_config.seed)
    trainer_ = trainer.Trainer(family, configs, run_dir, dataset, strategy=strategy, log=log)
    if model == "lolnerf":
        batch_rays = data_config.images_per_batch * data_config.rays_per_image
        what = f"LOLNeRF on {dataset} ({metadata.get('num_images')} images, "
        what += f"{model_config.num_latents} latents)"
    else:  # vae2 branch: NeRF-VAE scene batches
        batch_rays = data_config.scenes_per_batch * data_config.target_rays
        what = f"{model} on {dataset} ({metadata.get('num_objects')} scenes)"
    log(
        f"training {what} for {train_config.num_steps} steps: "
        f"{batch_rays} rays/step over {strategy.num_replicas_in_sync} replica(s) "
        f"({type(strategy).__name__}); TensorBoard: tensorboard --logdir "
        f"{os.path.join(str(run_dir), trainer.TENSORBOARD_DIR)}"
    )
    result = trainer_.train()
    log(
        f"done: step {result.step} in {trainer.format_duration(result.seconds)}; "
        f"checkpoint {result.checkpoint}"
    )
    return result


def _interrupt(signum, frame):
    del frame
    # Python runs this between bytecodes, i.e. between training steps: the trainer then saves
    # the current step (its KeyboardInterrupt handling) and the process exits.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.dataset or not FLAGS.run_dir:
        raise app.UsageError("--dataset and --run_dir are required")
    if not FLAGS["verbosity"].present:
        # TensorFlow's INFO lines (strategy devices, saver callbacks) drown the progress lines.
        logging.set_verbosity(logging.WARNING)
    try:
        # Plain Python first (no TensorFlow op), so bad settings fail before any device work;
        # then the strategy: MultiWorkerMirroredStrategy must precede every other TF op.
        metadata = dataset_dir.read_metadata(FLAGS.dataset)
        configs = build_configs(flag_values(), metadata)
        strategy = trainer.make_strategy(FLAGS.strategy, FLAGS.tpu)
        # SIGTERM (a scheduler's preemption, `kill`) saves a checkpoint like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        train(
            FLAGS.dataset,
            FLAGS.run_dir,
            *configs,
            flags_used=flag_values(),
            strategy=strategy,
            model=FLAGS.model,
        )
    except KeyboardInterrupt:
        print(
            "train: interrupted; the newest checkpoint holds the last step (run the same "
            "command to resume)",
            file=sys.stderr,
            flush=True,
        )
        return 130
    except trainer.NonFiniteLossError as e:
        print(f"train: stopped: {e}", file=sys.stderr, flush=True)
        return 1
    except ValueError as e:  # DatasetError, RunDirError, invalid settings
        print(f"train: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def run():
    """Console entry point (setup.py: tfglo-train)."""
    app.run(main)


if __name__ == "__main__":
    run()
