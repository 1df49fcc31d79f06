"""Starting (or resuming) a training run of any model family: what `python -m tfglo.train` does
once its flags are configs.

`train_run` checks the dataset against the family's configs, refuses a run directory that holds
another model (`run_dir.check_resume`), writes `run_dir/config.json` on the chief, seeds the
initialisation, builds the engine's `Trainer`, prints the start line (the family's name, the
images it trains on and those held out, its batch, the replicas, where TensorBoard reads) and
trains to `num_steps`, resuming from the newest checkpoint.
"""

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from tfglo.data import dataset_dir
from tfglo.engine import family as family_lib
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import trainer


def images_phrase(metadata: Mapping[str, Any]) -> str:
    """How many images a dataset trains on and how many it holds out, from its dataset.json.

    "80 training images, 20 held out" from `splits` (split=train / split=eval records); a
    dataset.json without `splits` (older datasets): "100 images".
    """
    splits = metadata.get("splits")
    if isinstance(splits, Mapping) and "train" in splits:
        held_out = sum(int(n) for split, n in splits.items() if split != "train")
        return f"{int(splits['train'])} training images, {held_out} held out"
    return f"{metadata.get('num_images', '?')} images"


def train_run(
    family: "family_lib.ModelFamily | str",
    configs: Mapping[str, Any],
    dataset: str | os.PathLike,
    run_dir: str | os.PathLike,
    flags_used: dict | None = None,
    strategy=None,
    log: Callable[[str], None] = trainer.print_line,
    should_stop: Callable[[], bool] | None = None,
) -> trainer.TrainResult:
    """Trains a model family on a dataset directory: checks, config.json, resume, train.

    Args:
      family: the model family (or its registered name).
      configs: its resolved config sections (`ModelFamily.configs_from_flags`).
      dataset: the dataset directory.
      run_dir: the run directory (created; resumed when it holds checkpoints).
      flags_used: the command-line flags, recorded in config.json.
      strategy: default `trainer.make_strategy(train.strategy, train.tpu)` of the "train"
        section; made before any other TensorFlow op (a MultiWorkerMirroredStrategy must be).
      log: receives console lines.
      should_stop: polled before every step; True stops the run there (`Trainer.train`).

    Raises:
      dataset_dir.DatasetError: the dataset directory is invalid.
      ValueError: the configs do not fit the family or the dataset.
      run_dir.RunDirError: run_dir holds a run with another model configuration.
      trainer.NonFiniteLossError: the loss became NaN or infinite.
    """
    import keras

    if isinstance(family, str):
        family = family_lib.get_family(family)
    configs = family.check_configs(configs)
    train_config = configs[family_lib.TRAIN_SECTION]
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
    if trainer.is_chief(strategy):
        # The resolved configuration and the command, readable in TensorBoard's text tab.
        resolved = run_dir_lib.make_config(
            family, configs, os.path.abspath(dataset), metadata, flags_used
        )
        trainer_.write_text(
            "config", "```\n" + json.dumps(resolved, indent=1, default=str) + "\n```"
        )
    details = family.describe(configs)
    log(
        f"training {family.display_name or family.name} on {dataset} ({images_phrase(metadata)})"
        f" for {train_config.num_steps} steps: {details + '; ' if details else ''}"
        f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}); TensorBoard: "
        f"tensorboard --logdir {os.path.join(str(run_dir), trainer.TENSORBOARD_DIR)}"
    )
    result = trainer_.train(should_stop=should_stop)
    log(
        f"done: step {result.step} in {trainer.format_duration(result.seconds)}; "
        f"checkpoint {result.checkpoint}"
    )
    return result
