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

import os
import signal
import sys

from absl import app, flags, logging

from tfglo.data import dataset_dir, pipeline
from tfglo.engine import run_dir as run_dir_lib
from tfglo.engine import trainer
from tfglo.lolnerf import config as model_config_lib
from tfglo.nerf import config as config_lib

FLAGS = flags.FLAGS
_MODEL = model_config_lib.ModelConfig()
_FG = config_lib.ForegroundConfig()
_BG = config_lib.BackgroundConfig()
_RENDER = config_lib.RenderConfig()
_LOSS = config_lib.LossConfig()
_TRAIN = trainer.TrainConfig()
_DATA = pipeline.RayBatchConfig()

# Names of the flags this app defines (recorded in config.json), and per name this app's
# (parser, default), so `flagfile_values` does not depend on the global FLAGS.
FLAG_NAMES: list[str] = []
_SPECS: dict[str, tuple[flags.ArgumentParser, object]] = {}
_PARSERS = {
    "string": flags.ArgumentParser,
    "integer": flags.IntegerParser,
    "float": flags.FloatParser,
    "boolean": flags.BooleanParser,
    "list": flags.ListParser,
}


def _define(kind: str, name: str, default, help_text: str, enum_values=None):
    FLAG_NAMES.append(name)
    if kind == "enum":
        _SPECS[name] = (flags.EnumParser(enum_values), default)
    else:
        _SPECS[name] = (_PARSERS[kind](), default)
    if name in FLAGS:
        # Defined by another tfglo app imported into the same program (e.g. --dataset, --seed):
        # share it rather than fail with DuplicateFlagError.
        return
    if kind == "enum":
        flags.DEFINE_enum(name, default, enum_values, help_text)
    else:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text)


# Run.
_define("string", "dataset", None, "Dataset directory (python -m tfglo.prepare). Required.")
_define("string", "run_dir", None, "Run directory: config.json, checkpoints/, tensorboard/.")

# Model: latent table.
_define(
    "integer",
    "num_latents",
    None,
    "Rows of the latent table; default: dataset.json's num_latents (one per image or object).",
)
_define("integer", "latent_dim", _MODEL.latent_dim, "Size of each latent code.")
_define(
    "float",
    "latent_init_std",
    _MODEL.latent_init_std,
    "Std of the latent table's normal initialisation (0: zeros).",
)
# Model: foreground field.
_define("integer", "fg_width", _FG.width, "Foreground MLP units per hidden layer.")
_define("integer", "fg_depth", _FG.depth, "Foreground MLP hidden layers.")
_define(
    "integer",
    "fg_skip_layer",
    _FG.skip_layer,
    "Hidden layer whose input gets [encoding, latent] concatenated again.",
)
_define("integer", "fg_num_octaves", _FG.num_octaves, "Positional-encoding octaves L of positions.")
_define(
    "float",
    "fg_density_bias",
    _FG.density_bias,
    "Added to the raw density before softplus (negative starts the field empty).",
)
# Model: background field.
_define(
    "boolean",
    "background",
    _BG.enabled,
    "Learn a background field b(direction, latent); off: constant --background_color.",
)
_define("integer", "bg_width", _BG.width, "Background MLP units per hidden layer.")
_define("integer", "bg_depth", _BG.depth, "Background MLP hidden layers.")
_define("integer", "bg_num_octaves", _BG.num_octaves, "Positional-encoding octaves of directions.")
# Model: rendering.
_define("integer", "num_coarse", _RENDER.num_coarse, "Stratified samples per ray.")
_define("integer", "num_fine", _RENDER.num_fine, "Importance samples per ray (0: none).")
_define(
    "float",
    "scene_radius",
    None,
    "Bounding-sphere radius (object units) for rendering and ray bounds; default: "
    "dataset.json's scene_radius (else 1).",
)
_define("integer", "chunk_size", _RENDER.chunk_size, "Rays per chunk when rendering images.")
_define("boolean", "perturb", _RENDER.perturb, "Jitter the stratified samples in training.")
_define(
    "list",
    "background_color",
    [str(c) for c in _RENDER.background_color],
    "R,G,B in [0, 1] behind the foreground when --nobackground.",
)
# Loss.
_define("float", "mask_weight", _LOSS.mask_weight, "lambda_mask of MSE(alpha, mask); 0: off.")
_define(
    "float",
    "hard_surface_weight",
    _LOSS.hard_surface_weight,
    "lambda_hard of the hard-surface prior on sample weights; 0: off.",
)
# Optimisation and schedule.
_define("integer", "num_steps", _TRAIN.num_steps, "Total training steps of the run.")
_define(
    "float",
    "network_learning_rate",
    _TRAIN.network_learning_rate,
    "Adam learning rate of the field weights at step 0.",
)
_define(
    "float",
    "latent_learning_rate",
    _TRAIN.latent_learning_rate,
    "Learning rate of the latent table at step 0 (its own optimiser).",
)
_define(
    "float",
    "lr_decay_rate",
    _TRAIN.decay_rate,
    "Both learning rates are multiplied by this every --lr_decay_steps (continuously).",
)
_define("integer", "lr_decay_steps", _TRAIN.decay_steps, "See --lr_decay_rate.")
_define("float", "adam_beta1", _TRAIN.adam_beta1, "Adam beta_1 (both optimisers).")
_define("float", "adam_beta2", _TRAIN.adam_beta2, "Adam beta_2 (both optimisers).")
_define("float", "adam_epsilon", _TRAIN.adam_epsilon, "Adam epsilon (both optimisers).")
_define(
    "enum",
    "latent_optimizer",
    _TRAIN.latent_optimizer,
    "lazy_adam: a step moves only the latent rows in the batch; adam: Keras Adam (dense; use "
    "it on TPU).",
    enum_values=list(trainer.LATENT_OPTIMIZERS),
)
# Checkpoints and logging.
_define("integer", "checkpoint_every", _TRAIN.checkpoint_every, "Steps between checkpoints.")
_define("integer", "keep_checkpoints", _TRAIN.keep_checkpoints, "Newest checkpoints kept.")
_define("integer", "log_every", _TRAIN.log_every, "Steps between scalar summaries/progress.")
_define(
    "integer",
    "image_summary_every",
    _TRAIN.image_summary_every,
    "Steps between image summaries (0: none).",
)
_define(
    "integer", "summary_images", _TRAIN.summary_images, "Training identities in image summaries."
)
_define(
    "integer",
    "summary_novel_views",
    _TRAIN.summary_novel_views,
    "Novel views per identity in the image summaries.",
)
_define("float", "summary_yaw", _TRAIN.summary_yaw, "Novel views span yaw +-this (radians).")
# Distribution.
_define(
    "enum",
    "strategy",
    _TRAIN.strategy,
    "mirrored: all local GPUs (else the CPU); multi_worker: MultiWorkerMirroredStrategy from "
    "TF_CONFIG; tpu: TPUStrategy; one_device: the first GPU, else the CPU.",
    enum_values=list(trainer.STRATEGIES),
)
_define("string", "tpu", _TRAIN.tpu, "TPU name or grpc:// address for --strategy=tpu.")
_define("boolean", "jit_compile", _TRAIN.jit_compile, "XLA-compile the forward/backward pass.")
_define("integer", "seed", _TRAIN.seed, "Seeds initialisation, ray sampling and jitter.")
# Data.
_define(
    "integer",
    "images_per_batch",
    _DATA.images_per_batch,
    "Images per global step (split evenly over the replicas).",
)
_define("integer", "rays_per_image", _DATA.rays_per_image, "Rays drawn from each image.")
_define("boolean", "cache", _DATA.cache, "Keep decoded images in memory after the first pass.")
_define("integer", "shuffle_buffer", _DATA.shuffle_buffer, "Ray groups in the shuffle buffer.")
_define("boolean", "verify_data", _DATA.verify, "Read every shard once before training.")
_define("integer", "num_parallel_reads", _DATA.num_parallel_reads, "Shards read concurrently.")

# ---- issue 15 (hard-surface helper): flags of the new LossConfig fields. Temporary: once flags
# are derived from the config dataclasses these come from LossConfig; drop this block and its
# two uses in build_configs then. ----
_define(
    "enum",
    "hard_surface_reduction",
    _LOSS.hard_surface_reduction,
    "Hard-surface prior: per_ray_sum (sum over a ray's samples, mean over rays) or mean (over "
    "every sample).",
    enum_values=list(config_lib.HARD_SURFACE_REDUCTIONS),
)
_define(
    "enum",
    "hard_surface_samples",
    _LOSS.hard_surface_samples,
    "Hard-surface prior on the composite's weights or on the coarse (stratified) pass's.",
    enum_values=list(config_lib.HARD_SURFACE_SAMPLES),
)
# ---- end of the issue 15 block ----


def flag_values() -> dict:
    """The values of this app's flags (JSON-able)."""
    return {name: FLAGS[name].value for name in FLAG_NAMES}


def flagfile_values(flagfile: str | os.PathLike | None = None, **overrides) -> dict:
    """This app's flag values from a flagfile and overrides, without touching the global FLAGS.

    For programs that train in-process (the demo, ablations): the same values as
    `python -m tfglo.train --flagfile=FILE --name=value ...` would use.

    Args:
      flagfile: a flagfile of `--name=value`, `--name` and `--noname` lines (`#` comments,
        nested `--flagfile=` lines allowed); None: the defaults.
      **overrides: flag name -> value (already typed, e.g. `num_steps=100, background=False`).

    Raises:
      ValueError: an unknown flag or an unparsable value (the message names the file and line).
    """
    values = {name: default for name, (_, default) in _SPECS.items()}
    if flagfile is not None:
        _read_flagfile(str(flagfile), values)
    for name, value in overrides.items():
        if name not in values:
            raise ValueError(f"unknown tfglo.train flag {name!r}")
        values[name] = value
    return values


def _read_flagfile(path: str, values: dict) -> None:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        if not line.startswith("--"):
            raise ValueError(f"{where}: expected --name=value, got {line!r}")
        name, has_value, text = line[2:].partition("=")
        if name == "flagfile":
            _read_flagfile(text, values)  # relative to the working directory, as absl does
            continue
        if not has_value and name not in values and name.startswith("no"):
            name, text = name[2:], "false"
        elif not has_value:
            text = "true"
        if name not in values:
            raise ValueError(f"{where}: unknown tfglo.train flag --{name}")
        try:
            values[name] = _SPECS[name][0].parse(text)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: bad value for --{name}: {e}") from e


def build_configs(values: dict, metadata: dict):
    """(model, loss, train, data) configs from flag values and the dataset's dataset.json.

    Args:
      values: flag name -> value (`flag_values()`).
      metadata: dataset.json contents.

    Raises:
      ValueError: invalid values (the message names the setting), or a latent table smaller than
        the dataset's latent ids.
    """
    num_latents = values["num_latents"] or int(metadata.get("num_latents") or 0)
    if num_latents < 1:
        raise ValueError("dataset.json has no num_latents: pass --num_latents")
    if num_latents < int(metadata.get("num_latents") or 0):
        raise ValueError(
            f"--num_latents={num_latents} is smaller than the dataset's {metadata['num_latents']}"
        )
    radius = values["scene_radius"] or pipeline.scene_radius(metadata)
    color = tuple(float(c) for c in values["background_color"])
    if len(color) != 3:
        raise ValueError(f"--background_color needs 3 values, got {values['background_color']}")
    model = model_config_lib.ModelConfig(
        num_latents=num_latents,
        latent_dim=values["latent_dim"],
        latent_init_std=values["latent_init_std"],
        foreground=config_lib.ForegroundConfig(
            width=values["fg_width"],
            depth=values["fg_depth"],
            skip_layer=values["fg_skip_layer"],
            num_octaves=values["fg_num_octaves"],
            density_bias=values["fg_density_bias"],
        ),
        background=config_lib.BackgroundConfig(
            enabled=values["background"],
            width=values["bg_width"],
            depth=values["bg_depth"],
            num_octaves=values["bg_num_octaves"],
        ),
        render=config_lib.RenderConfig(
            num_coarse=values["num_coarse"],
            num_fine=values["num_fine"],
            scene_radius=float(radius),
            chunk_size=values["chunk_size"],
            perturb=values["perturb"],
            background_color=color,
        ),
    )
    loss = config_lib.LossConfig(
        mask_weight=values["mask_weight"],
        hard_surface_weight=values["hard_surface_weight"],
        hard_surface_reduction=values["hard_surface_reduction"],  # issue 15 block
        hard_surface_samples=values["hard_surface_samples"],  # issue 15 block
    )
    train = trainer.TrainConfig(
        num_steps=values["num_steps"],
        network_learning_rate=values["network_learning_rate"],
        latent_learning_rate=values["latent_learning_rate"],
        decay_rate=values["lr_decay_rate"],
        decay_steps=values["lr_decay_steps"],
        adam_beta1=values["adam_beta1"],
        adam_beta2=values["adam_beta2"],
        adam_epsilon=values["adam_epsilon"],
        latent_optimizer=values["latent_optimizer"],
        checkpoint_every=values["checkpoint_every"],
        keep_checkpoints=values["keep_checkpoints"],
        log_every=values["log_every"],
        image_summary_every=values["image_summary_every"],
        summary_images=values["summary_images"],
        summary_novel_views=values["summary_novel_views"],
        summary_yaw=values["summary_yaw"],
        strategy=values["strategy"],
        tpu=values["tpu"],
        jit_compile=values["jit_compile"],
        seed=values["seed"],
    )
    data = pipeline.RayBatchConfig(
        images_per_batch=values["images_per_batch"],
        rays_per_image=values["rays_per_image"],
        seed=values["seed"],
        cache=values["cache"],
        shuffle_buffer=values["shuffle_buffer"],
        scene_radius=float(radius),
        verify=values["verify_data"],
        num_parallel_reads=values["num_parallel_reads"],
    )
    return model, loss, train, data


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

    Raises:
      dataset_dir.DatasetError: the dataset directory is invalid.
      run_dir.RunDirError: run_dir holds a run with another model configuration.
      trainer.NonFiniteLossError: the loss became NaN or infinite.
    """
    import keras

    strategy = strategy or trainer.make_strategy(train_config.strategy, train_config.tpu)
    metadata = dataset_dir.read_metadata(dataset)
    num_latents = int(metadata.get("num_latents") or 0)
    if model_config.num_latents < num_latents:
        raise ValueError(
            f"the latent table has {model_config.num_latents} rows, the dataset {num_latents} "
            "latent ids"
        )
    run_dir_lib.check_resume(run_dir, model_config)
    if trainer.is_chief(strategy):
        values = run_dir_lib.make_config(
            model_config,
            loss_config,
            train_config,
            data_config,
            os.path.abspath(dataset),
            metadata,
            flags_used,
        )
        run_dir_lib.write_config(run_dir, values)
    # Deterministic initialisation (Keras initialisers draw from the global seed).
    keras.utils.set_random_seed(train_config.seed)
    trainer_ = trainer.lolnerf_trainer(
        dataset,
        run_dir,
        model_config,
        loss_config,
        train_config,
        data_config,
        strategy=strategy,
        log=log,
    )
    batch_rays = data_config.images_per_batch * data_config.rays_per_image
    log(
        f"training LOLNeRF on {dataset} ({metadata.get('num_images')} images, "
        f"{model_config.num_latents} latents) for {train_config.num_steps} steps: "
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
        train(FLAGS.dataset, FLAGS.run_dir, *configs, flags_used=flag_values(), strategy=strategy)
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
