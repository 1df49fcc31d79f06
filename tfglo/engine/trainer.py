"""The training loop: a custom loop under a `tf.distribute` strategy (DESIGN.md sections 2, 6).

`Trainer` trains one model of a model family (`tfglo.engine.family.ModelFamily`): the family
builds the model from its configuration, names its variable groups (each with its own optimiser,
learning rate and schedule: LOLNeRF has "network" and "latent", the latent table's gradient being
a sparse `tf.IndexedSlices`), computes each batch's loss terms, and provides the per-replica
dataset and the image summaries. The trainer owns the rest: the strategy, one optimiser per
group, a step counter, a `tf.train.CheckpointManager` and the TensorBoard writers. It names no
family; `python -m tfglo.train` builds it for the family `--model` names (`tfglo.engine.launch`).

Distribution. Everything with state (model, optimisers, step) is created inside
`strategy.scope()` and fully built *before* the first `tf.function` runs: Keras 3 creates optimiser
slots lazily on the first `apply_gradients`, which fails under MirroredStrategy when it happens
inside a `tf.function`, so `optimizer.build(variables)` is called in scope. Each replica gets its
share of the global batch, computes its mean loss, and scales it by its share of the global rays
(`local_rays / global_rays`); the optimisers all-reduce (sum) the gradients across replicas, so
the update equals the one for the global batch on one device, `IndexedSlices` included.

Checkpoints. `run_dir/checkpoints/ckpt-<step>` every `checkpoint_every` steps and at the end
(`tf.train.Checkpoint(model=, <group>_optimizer=..., step=)`: for LOLNeRF `network_optimizer`
and `latent_optimizer`, the names run directories have always used), the newest
`keep_checkpoints` kept. A new `Trainer` on the same run directory restores the newest one, so a
run killed at any moment (even SIGKILL during a save: TensorFlow renames the checkpoint into
place, and the `checkpoint` index is replaced atomically) resumes where its last checkpoint left
it, with the step count, the learning-rate schedules and the optimisers' moments intact. A
non-finite loss stops the run with `NonFiniteLossError` and does not save the bad state. In
multi-worker training only the chief writes checkpoints and summaries; the other workers save
into a temporary directory they delete (saving may need every worker), and write summaries
nowhere.

TensorBoard scalars: `loss/<term>` for every loss term, `metrics/psnr` (from an "rgb_mse" term),
`learning_rate/<group>` for every variable group, `throughput/rays_per_second` and
`throughput/samples_per_second`; the family's batch statistics under the tags its
`window_statistics` names (LOLNeRF: foreground coverage and hardness), with any warning it
returns printed on the console; `eval/...` scalars of held-out views every `eval_every` steps;
the resolved configuration (config.json) as text; images as the family's summaries name them.
"""

import dataclasses
import math
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfglo.engine import family as family_lib
from tfglo.utils import configs as configs_lib

STRATEGIES = ("mirrored", "multi_worker", "tpu", "one_device")
LATENT_OPTIMIZERS = ("lazy_adam", "adam")
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_PREFIX = "ckpt"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, checkpoint, logging and distribution settings (section "train").

    The trainer itself reads the steps, checkpoint, logging, distribution, XLA and seed fields.
    The learning rates, decay, Adam and latent-optimiser fields and the `summary_*` fields are
    read by the LOLNeRF family (its variable groups and image summaries). The batch (images per
    step, rays per image) belongs to the data configuration (`pipeline.RayBatchConfig`), which is
    the one place it is set.

    Attributes:
      num_steps: total optimisation steps of the run (a resumed run stops at the same number).
      network_learning_rate: Adam learning rate of the field weights at step 0.
      latent_learning_rate: Adam learning rate of the latent table at step 0 (own optimiser).
      decay_rate: both learning rates are multiplied by this every `decay_steps` steps
        (continuous exponential decay: lr(step) = lr * decay_rate ** (step / decay_steps)).
      decay_steps: see `decay_rate`.
      adam_beta1, adam_beta2, adam_epsilon: Adam's moment decay rates and epsilon (both
        optimisers).
      latent_optimizer: "lazy_adam" (`lolnerf.latents.LazyAdam`: a step moves only the table rows in
        the batch) or "adam" (Keras Adam: densifies the sparse gradient, so every row's moments
        decay and rows keep drifting while their image is not in the batch).
      checkpoint_every: save a checkpoint every this many steps (and always at the end).
      keep_checkpoints: number of newest checkpoints kept on disk.
      log_every: write scalar summaries and print progress every this many steps.
      image_summary_every: write image summaries every this many steps (0 disables; also at the
        end of the run).
      summary_images: training images (identities) shown in the image summaries.
      summary_novel_views: novel views per identity in the image summaries (an orbit in yaw).
      summary_yaw: the novel views span yaw in [-summary_yaw, summary_yaw], radians.
      eval_every: score held-out views (the family's `eval_summaries`: LOLNeRF, PSNR and SSIM of
        a few eval-split views of trained identities) to TensorBoard every this many steps and
        at the end (0 disables; nothing when the dataset has no eval split).
      strategy: "mirrored" (all local GPUs, else the CPU), "multi_worker" (TF_CONFIG), "tpu",
        "one_device".
      tpu: TPU name or address for the TPU cluster resolver ("" = the local/default TPU).
      jit_compile: XLA-compile each replica's forward and backward pass.
      seed: seeds weight initialisation (the data pipeline has its own seed).
    """

    num_steps: int = 100_000
    network_learning_rate: float = 5e-4
    latent_learning_rate: float = 1e-3
    decay_rate: float = 0.1
    decay_steps: int = 100_000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-7
    latent_optimizer: str = "lazy_adam"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 100
    image_summary_every: int = 1000
    summary_images: int = 3
    summary_novel_views: int = 3
    summary_yaw: float = 0.5
    eval_every: int = 1000
    strategy: str = "mirrored"
    tpu: str = ""
    jit_compile: bool = False
    seed: int = 0

    # Its command-line flags (`tfglo.utils.configs`): the decay keeps its `lr_` flag names, and
    # the strategy and latent optimiser are enum flags; every family with this section shares them.
    FLAG_NAMES: ClassVar[configs_lib.FlagNames] = configs_lib.FlagNames(
        names={"decay_rate": "lr_decay_rate", "decay_steps": "lr_decay_steps"},
        choices={"strategy": STRATEGIES, "latent_optimizer": LATENT_OPTIMIZERS},
    )

    def __post_init__(self):
        if self.num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {self.num_steps}")
        for name in ("decay_steps", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.image_summary_every < 0:
            raise ValueError(f"image_summary_every must be >= 0, got {self.image_summary_every}")
        for name in ("network_learning_rate", "latent_learning_rate", "decay_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.latent_optimizer not in LATENT_OPTIMIZERS:
            raise ValueError(
                f"unknown latent_optimizer {self.latent_optimizer!r}; expected one of "
                f"{LATENT_OPTIMIZERS}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.strategy == "tpu" and self.latent_optimizer == "lazy_adam":
            # LazyAdam's tf.unique has a data-dependent shape, which XLA on TPU cannot compile.
            raise ValueError(
                "latent_optimizer 'lazy_adam' does not run on TPU (tf.unique has a dynamic "
                "shape): use latent_optimizer 'adam' with strategy 'tpu'"
            )


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped without saving that state."""


@dataclasses.dataclass
class TrainResult:
    """What a call to `Trainer.train` did.

    Attributes:
      start_step: the step the call started from (> 0 after a resume).
      step: the step it ended at.
      seconds: wall time of the loop, seconds.
      metrics: the last logged averages (loss terms, psnr, rays_per_second, ...).
      checkpoint: path prefix of the newest checkpoint (None when nothing was saved).
    """

    start_step: int
    step: int
    seconds: float
    metrics: dict[str, float]
    checkpoint: str | None


def print_line(message: str) -> None:
    """Prints a console line, flushed (the default `log` of the trainer)."""
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------
# Strategies.


def make_strategy(name: str = "mirrored", tpu: str = "") -> tf.distribute.Strategy:
    """Builds a distribution strategy by name.

    Create it at the start of the program: MultiWorkerMirroredStrategy and TPUStrategy must exist
    before other TensorFlow ops run.

    Args:
      name: "mirrored": MirroredStrategy over every local GPU, or over the logical CPU devices
        when there is no GPU (normally one; tests configure two); "multi_worker":
        MultiWorkerMirroredStrategy with the cluster from the TF_CONFIG environment variable;
        "tpu": TPUStrategy with a TPUClusterResolver; "one_device": the first GPU, else the CPU.
      tpu: TPU name or grpc:// address for "tpu" ("" = the default resolution).

    Raises:
      ValueError: an unknown name.
    """
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def task_info(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, task id) of this process in a multi-worker cluster; (None, 0) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and summaries.

    The chief is the "chief" task, or worker 0 when the cluster has no "chief" task, or the only
    process of a single-machine strategy.
    """
    task_type, task_id = task_info(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


# ----------------------------------------------------------------------------------------------
# Checkpoint helpers.


def checkpoint_dir(run_dir: os.PathLike | str) -> pathlib.Path:
    """run_dir/checkpoints."""
    return pathlib.Path(run_dir) / CHECKPOINT_DIR


def checkpoint_step(path: str) -> int:
    """The step number of a checkpoint prefix such as ".../ckpt-1200"."""
    return int(str(path).rsplit("-", 1)[-1])


def _is_complete(prefix: str) -> bool:
    """Whether a checkpoint prefix has a readable index and every data shard it names."""
    path = pathlib.Path(prefix)
    shards = list(path.parent.glob(f"{path.name}.data-*-of-*"))
    if not shards or not pathlib.Path(f"{prefix}.index").is_file():
        return False
    total = int(shards[0].name.rsplit("-of-", 1)[-1])
    if len(shards) != total:
        return False
    try:
        tf.train.load_checkpoint(prefix)  # parses the whole index (a truncated one fails)
    except (tf.errors.OpError, ValueError):
        return False
    return True


def complete_checkpoints(directory: os.PathLike | str) -> list[str]:
    """Path prefixes of the complete checkpoints in a checkpoint directory, oldest step first.

    Found from the files, not from the `checkpoint` index: a `ckpt-<step>` counts when its
    index parses and all its data shards are there (what a killed save leaves does not).
    """
    found = []
    for index in pathlib.Path(directory).glob(f"{CHECKPOINT_PREFIX}-*.index"):
        prefix = str(index)[: -len(".index")]
        try:
            step = checkpoint_step(prefix)
        except ValueError:
            continue
        if _is_complete(prefix):
            found.append((step, prefix))
    return [prefix for _, prefix in sorted(found)]


def latest_checkpoint(directory: os.PathLike | str) -> str | None:
    """The newest complete checkpoint of a checkpoint directory (path prefix), or None.

    `tf.train.latest_checkpoint` trusts the `checkpoint` index: a truncated or garbled index
    gives None (so a run would start again from step 0), one naming a checkpoint whose files are
    gone gives None too. Here the index's choice is taken when it is complete and no newer
    complete checkpoint exists (a kill between writing a checkpoint and updating the index),
    else the newest complete checkpoint on disk.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return None
    try:
        indexed = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        indexed = None
    complete = complete_checkpoints(directory)
    newest = complete[-1] if complete else None
    if indexed and _is_complete(indexed):
        if newest is None or checkpoint_step(newest) <= checkpoint_step(indexed):
            return indexed
    return newest


def recover_checkpoint_index(
    directory: os.PathLike | str, log: Callable[[str], None] = print_line
) -> str | None:
    """Rewrites a checkpoint directory's `checkpoint` index when it does not name the newest
    complete checkpoint (truncated, garbled, pointing at missing files, or one save behind).

    Returns the newest complete checkpoint (None when there is none; a garbled index is then
    removed). A run directory a kill left in any state resumes from its last complete state.
    """
    directory = pathlib.Path(directory)
    index = directory / "checkpoint"
    newest = latest_checkpoint(directory)
    try:
        indexed = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        indexed = None
    if newest is None:
        if index.exists() and indexed is None:
            log(f"removing {index}: it names no complete checkpoint")
            index.unlink()
        return None
    if indexed != newest:
        complete = complete_checkpoints(directory)
        log(f"checkpoint index {index} was stale or damaged: now names {pathlib.Path(newest).name}")
        tf.compat.v1.train.update_checkpoint_state(
            str(directory),
            pathlib.Path(newest).name,
            all_model_checkpoint_paths=[pathlib.Path(p).name for p in complete],
        )
    return newest


def _remove_orphans(directory: pathlib.Path, keep: list[str]) -> None:
    """Deletes checkpoint files a killed save left behind (not listed in the index).

    Every checkpoint the `checkpoint` index lists is kept besides `keep`: the manager's own list
    leaves out entries without a timestamp newer than the index's last_preserved_timestamp (an
    index written by other tools, or a clock that went back), and those are not orphans.
    """
    state = tf.train.get_checkpoint_state(str(directory))
    if state is not None:
        keep = [*keep, state.model_checkpoint_path, *state.all_model_checkpoint_paths]
    kept = {pathlib.Path(p).name for p in keep if p}
    for path in directory.glob(f"{CHECKPOINT_PREFIX}-*"):
        name = path.name.split(".", 1)[0]
        if name.endswith("_temp"):
            shutil.rmtree(path, ignore_errors=True)
        elif name not in kept and path.is_file():
            path.unlink(missing_ok=True)


def format_duration(seconds: float) -> str:
    """ "1h02m", "3m05s" or "42s"."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _format_rate(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"


# ----------------------------------------------------------------------------------------------
# The trainer.


class Trainer:
    """A custom training loop for a model family, one optimiser per variable group.

    Usage:
        trainer = Trainer(family, configs, run_dir, dataset)  # restores if it can
        result = trainer.train()  # to configs["train"].num_steps; NonFiniteLossError on NaN

    Attributes:
      family: the `ModelFamily`.
      configs: its configuration, section name -> config dataclass.
      config: `configs["train"]`, the `TrainConfig`.
      strategy: the distribution strategy.
      model: the family's model, built in `strategy.scope()`.
      variable_groups: group name -> list of its variables.
      optimizers: group name -> its optimiser, built in scope.
      step: int64 variable, the number of optimisation steps taken.
      checkpoint: `tf.train.Checkpoint(model=, <group>_optimizer=, ..., step=)`.
      manager: its `tf.train.CheckpointManager` (chief: run_dir/checkpoints; others: a temp dir).
      is_chief: whether this process writes checkpoints and summaries.
      restored_from: checkpoint prefix restored at construction, or None.
    """

    def __init__(
        self,
        family: "family_lib.ModelFamily | str",
        configs: Mapping[str, Any],
        run_dir: os.PathLike | str,
        dataset: Any = None,
        strategy: tf.distribute.Strategy | None = None,
        log: Callable[[str], None] = print_line,
    ):
        """Builds model and optimisers in scope and restores the newest checkpoint.

        Args:
          family: a `ModelFamily`, or the name of a registered one.
          configs: every config section of the family; "train" is a `TrainConfig`.
          run_dir: the run directory (checkpoints/ and tensorboard/ go inside).
          dataset: the training data as the family's `dataset_fn` takes it (a dataset
            directory for LOLNeRF); read only when training starts.
          strategy: defaults to `make_strategy(config.strategy, config.tpu)`.
          log: receives the console progress lines.

        Raises:
          ValueError: bad configs or group names, or a checkpoint in run_dir that does not
            match the model.
        """
        if isinstance(family, str):
            family = family_lib.get_family(family)
        self.family = family
        self.configs = family.check_configs(configs)
        config = self.configs.get(family_lib.TRAIN_SECTION)
        if not isinstance(config, TrainConfig):
            raise ValueError(
                f"config section {family_lib.TRAIN_SECTION!r} must be a TrainConfig, got "
                f"{type(config).__name__}"
            )
        self.config = config
        self.run_dir = pathlib.Path(run_dir)
        self.strategy = strategy or make_strategy(config.strategy, config.tpu)
        self.dataset = dataset
        self.dataset_fn = family.dataset_fn(self.configs, dataset)
        self.image_summary_fn = (
            family.image_summaries(self.configs, dataset) if config.image_summary_every else None
        )
        self.eval_summary_fn = (
            family.eval_summaries(self.configs, dataset) if config.eval_every else None
        )
        self.log = log
        self.is_chief = is_chief(self.strategy)
        self.task_type, self.task_id = task_info(self.strategy)

        with self.strategy.scope():
            self.model = family.build_model(self.configs)
            groups = family.variable_groups(self.model, self.configs)
            _check_groups(groups)
            self.variable_groups = {name: list(g.variables) for name, g in groups.items()}
            self.optimizers = {}
            for name, group in groups.items():
                optimizer = group.optimizer.make(f"{name}_optimizer")
                # Build the slots now, in scope, outside any tf.function (module docstring).
                optimizer.build(self.variable_groups[name])
                self.optimizers[name] = optimizer
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self._variables = [v for variables in self.variable_groups.values() for v in variables]
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            step=self.step,
            **{f"{name}_optimizer": opt for name, opt in self.optimizers.items()},
        )
        self._chief_dir = checkpoint_dir(self.run_dir)
        if self.is_chief and self._chief_dir.is_dir():
            # Before the manager reads the index: a killed save may have left it damaged.
            recover_checkpoint_index(self._chief_dir, self.log)
        if self.is_chief:
            self._save_dir = self._chief_dir
        else:
            # Non-chief workers take part in saving but into a directory they delete.
            self._save_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"tfglo_worker{self.task_id}_"))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            directory=str(self._save_dir),
            max_to_keep=config.keep_checkpoints,
            checkpoint_name=CHECKPOINT_PREFIX,
        )
        self.restored_from = self._restore()
        self._compute = tf.function(self._forward_backward, jit_compile=config.jit_compile)
        self._train_step = tf.function(self._distributed_step)
        self._writer = None
        self._iterator = None
        # Console lines at every log_every steps, and at least this often in between.
        self.progress_seconds = 60.0

    # -- construction ---------------------------------------------------------------------------

    def _restore(self) -> str | None:
        latest = latest_checkpoint(self._chief_dir)
        if self.is_chief and self._chief_dir.is_dir():
            _remove_orphans(self._chief_dir, self.manager.checkpoints)
        if latest is None:
            return None
        status = self.checkpoint.restore(latest)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:
            raise ValueError(
                f"checkpoint {latest} does not match the model being trained (was the run "
                f"directory made with other model settings?): {e}"
            ) from e
        self.log(f"resumed from {latest} at step {int(self.step.numpy())}")
        return latest

    # -- the step -------------------------------------------------------------------------------

    def _forward_backward(self, batch, share, seed):
        with tf.GradientTape() as tape:
            loss, terms, render = self.family.train_loss(self.model, batch, self.configs, seed)
            scaled_loss = loss * share
        gradients = tape.gradient(scaled_loss, self._variables)
        samples_per_ray = 1
        if isinstance(render, dict) and "weights" in render:
            samples_per_ray = render["weights"].shape[-1] or tf.shape(render["weights"])[-1]
        return terms, gradients, samples_per_ray

    def _replica_step(self, batch):
        context = tf.distribute.get_replica_context()
        local_rays = tf.cast(self.family.num_rays(batch), tf.float32)
        global_rays = context.all_reduce(tf.distribute.ReduceOp.SUM, local_rays)
        # Each replica's mean weighted by its share of the global batch; summing the replicas'
        # gradients (the optimisers all-reduce them) then gives the global-batch gradient.
        share = local_rays / global_rays
        # Sampling jitter seeded by (run seed, replica, step): a resumed run draws what an
        # uninterrupted one would have.
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        seed = tf.stack([self.config.seed * 1024 + replica, tf.cast(self.step, tf.int32)])
        terms, gradients, samples_per_ray = self._compute(batch, share, seed)
        start = 0
        for name, variables in self.variable_groups.items():
            end = start + len(variables)
            self.optimizers[name].apply_gradients(zip(gradients[start:end], variables))
            start = end
        outputs = {k: tf.cast(v, tf.float32) * share for k, v in terms.items() if k != "psnr"}
        outputs["rays"] = local_rays
        outputs["samples"] = local_rays * tf.cast(samples_per_ray, tf.float32)
        return outputs

    def _distributed_step(self, iterator):
        batch = next(iterator)
        per_replica = self.strategy.run(self._replica_step, args=(batch,))
        reduced = {
            k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }
        self.step.assign_add(1)
        return reduced

    # -- public ---------------------------------------------------------------------------------

    def learning_rates(self) -> dict[str, float]:
        """Group name -> its current learning rate (the schedule at the current step)."""
        return {
            name: float(optimizer.learning_rate.numpy())
            for name, optimizer in self.optimizers.items()
        }

    def save(self) -> str:
        """Saves a checkpoint numbered by the current step; returns the chief's path prefix."""
        step = int(self.step.numpy())
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            shutil.rmtree(self._save_dir, ignore_errors=True)
            return str(self._chief_dir / f"{CHECKPOINT_PREFIX}-{step}")
        return path

    def _summary_writer(self):
        if self._writer is None:
            if self.is_chief:
                self._writer = tf.summary.create_file_writer(str(self.run_dir / TENSORBOARD_DIR))
            else:
                self._writer = tf.summary.create_noop_writer()
        return self._writer

    def write_image_summaries(self) -> None:
        """Renders and writes the image summaries at the current step (chief only)."""
        if not (self.is_chief and self.image_summary_fn):
            return
        images = self.image_summary_fn(self.model)
        step = int(self.step.numpy())
        with self._summary_writer().as_default(step=step):
            for tag, value in images.items():
                value = np.clip(np.asarray(value, np.float32), 0.0, 1.0)
                tf.summary.image(tag, value, max_outputs=value.shape[0])
        self._writer.flush()

    def write_eval_summaries(self) -> dict[str, float]:
        """Scores the family's held-out views at the current step and writes the scalars
        (chief only); returns them ({} when there is nothing to score)."""
        if not (self.is_chief and self.eval_summary_fn):
            return {}
        scalars = self.eval_summary_fn(self.model)
        if scalars:
            with self._summary_writer().as_default(step=int(self.step.numpy())):
                for tag, value in scalars.items():
                    tf.summary.scalar(tag, value)
            self._writer.flush()
        return scalars

    def write_text(self, tag: str, text: str) -> None:
        """A text summary at the current step (chief only): e.g. the resolved configuration."""
        if not self.is_chief:
            return
        with self._summary_writer().as_default(step=int(self.step.numpy())):
            tf.summary.text(tag, text)
        self._writer.flush()

    def _write_scalars(self, step: int, metrics: dict[str, float], statistics=None) -> None:
        with self._summary_writer().as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(self._scalar_tag(name), value)
            for tag, value in (statistics or {}).items():
                tf.summary.scalar(tag, value)
        self._writer.flush()

    def _statistics(self, metrics: dict[str, float]) -> tuple[dict[str, float], list[str]]:
        """Moves the family's `statistic_terms` out of `metrics` (in place) and returns its
        `window_statistics` of them: TensorBoard scalars by tag, and warnings to print."""
        means = {k: metrics.pop(k) for k in self.family.statistic_terms if k in metrics}
        if not means:
            return {}, []
        return self.family.window_statistics(means)

    def train_step(self) -> dict[str, float]:
        """Runs one optimisation step on the next global batch.

        Returns:
          The global-batch means of the loss terms, plus "rays" and "samples" (global counts).

        Raises:
          NonFiniteLossError: the loss or a term is NaN or infinite (nothing is saved).
        """
        if self._iterator is None:
            start_step = int(self.step.numpy())
            dataset = self.strategy.distribute_datasets_from_function(
                lambda context: self.dataset_fn(context, start_step)
            )
            self._iterator = iter(dataset)
        outputs = self._train_step(self._iterator)
        values = {k: float(v.numpy()) for k, v in outputs.items()}
        if not all(math.isfinite(v) for v in values.values()):
            self._non_finite(int(self.step.numpy()), values)
        return values

    def train(
        self, num_steps: int | None = None, should_stop: Callable[[], bool] | None = None
    ) -> TrainResult:
        """Trains until the step counter reaches `num_steps` (default `config.num_steps`).

        Saves every `checkpoint_every` steps and at the end (also on KeyboardInterrupt in a
        single-worker run, when a step was taken since the last save), logs every `log_every`
        steps. `should_stop` (e.g. "SIGTERM arrived": `tfglo.train`) is polled before every
        step; when it answers True the run stops there as on KeyboardInterrupt (saves the step
        it reached, then raises KeyboardInterrupt), never in the middle of a step or a save.

        Raises:
          NonFiniteLossError: a step produced a NaN or infinite loss; nothing was saved for it and
            the newest checkpoint is the last good state.
        """
        c = self.config
        num_steps = c.num_steps if num_steps is None else num_steps
        start_step = int(self.step.numpy())
        started = time.time()
        metrics: dict[str, float] = {}
        if start_step >= num_steps:
            self.log(f"step {start_step} >= num_steps {num_steps}: nothing to train")
            return TrainResult(start_step, start_step, 0.0, metrics, self.manager.latest_checkpoint)
        sums: dict[str, float] = {}
        window_steps, window_seconds, step_seconds = 0, 0.0, None
        last_print = time.time()
        step = start_step
        saved_step = start_step if self.restored_from else -1
        try:
            while step < num_steps:
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt("stop requested")
                tick = time.time()
                values = self.train_step()
                elapsed = time.time() - tick
                step += 1
                if step > start_step + 1:  # the first step includes tracing: keep it out
                    step_seconds = (
                        elapsed if step_seconds is None else 0.9 * step_seconds + 0.1 * elapsed
                    )
                window_steps += 1
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if step_seconds is not None:  # throughput excludes the tracing step
                    window_seconds += elapsed
                    sums["timed_rays"] = sums.get("timed_rays", 0.0) + values.get("rays", 0.0)
                    sums["timed_samples"] = sums.get("timed_samples", 0.0) + values.get(
                        "samples", 0.0
                    )
                last = step == num_steps
                if step % c.log_every == 0 or last:
                    metrics = self._window_metrics(sums, window_steps, window_seconds)
                    statistics, warnings = self._statistics(metrics)
                    if self.is_chief:
                        self._write_scalars(step, metrics, statistics)
                    self._progress(step, num_steps, metrics, step_seconds)
                    for warning in warnings:
                        self.log(f"WARNING (step {step}): {warning}")
                    last_print = time.time()
                    sums, window_steps, window_seconds = {}, 0, 0.0
                elif time.time() - last_print > self.progress_seconds:
                    window = self._window_metrics(sums, window_steps, window_seconds)
                    self._statistics(window)
                    self._progress(step, num_steps, window, step_seconds)
                    last_print = time.time()
                if step % c.checkpoint_every == 0 or last:
                    self.save()
                    saved_step = step
                if c.image_summary_every and (step % c.image_summary_every == 0 or last):
                    self.write_image_summaries()
                if c.eval_every and (step % c.eval_every == 0 or last):
                    self.write_eval_summaries()
        except KeyboardInterrupt:
            current = int(self.step.numpy())
            # Nothing to save when no step was taken (a fresh run has nothing worth a ckpt-0).
            if self.task_type is None and current != saved_step and current > start_step:
                self.log(f"interrupted: saving step {current}")
                self.save()
            else:
                self.log(f"interrupted at step {current} (saved already)")
            raise
        finally:
            if self._writer is not None:
                self._writer.flush()
        if not self.is_chief:
            shutil.rmtree(self._save_dir, ignore_errors=True)
        return TrainResult(
            start_step, step, time.time() - started, metrics, self.manager.latest_checkpoint
        )

    def _non_finite(self, step: int, values: dict[str, float]) -> None:
        latest = tf.train.latest_checkpoint(str(self._chief_dir))
        terms = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k not in ("rays", "samples"))
        where = (
            f"the newest good checkpoint is {latest} (step {checkpoint_step(latest)})"
            if latest
            else "no checkpoint had been saved yet"
        )
        message = (
            f"non-finite loss at step {step} ({terms}); training stopped without saving this "
            f"state: {where}. Lower the learning rates or check the data before resuming."
        )
        if self._writer is not None:
            self._writer.flush()
        self.log(message)
        raise NonFiniteLossError(message)

    def _window_metrics(self, sums, steps, seconds) -> dict[str, float]:
        if not steps:
            return {}
        counts = ("rays", "samples", "timed_rays", "timed_samples")
        metrics = {k: v / steps for k, v in sums.items() if k not in counts}
        if "rgb_mse" in metrics:
            metrics["psnr"] = -10.0 * math.log10(max(metrics["rgb_mse"], 1e-10))
        if seconds > 0:
            metrics["rays_per_second"] = sums.get("timed_rays", 0.0) / seconds
            metrics["samples_per_second"] = sums.get("timed_samples", 0.0) / seconds
        for name, value in self.learning_rates().items():
            metrics[f"{name}{_LEARNING_RATE_SUFFIX}"] = value
        return metrics

    def _scalar_tag(self, name: str) -> str:
        """TensorBoard tag of a metric: loss terms go under loss/ (module docstring)."""
        if name in _SCALAR_TAGS:
            return _SCALAR_TAGS[name]
        group = name.removesuffix(_LEARNING_RATE_SUFFIX)
        if name.endswith(_LEARNING_RATE_SUFFIX) and group in self.optimizers:
            return f"learning_rate/{group}"
        return f"loss/{name}"

    def _progress(self, step, num_steps, metrics, step_seconds) -> None:
        parts = [f"step {step:>{len(str(num_steps))}}/{num_steps}"]
        not_terms = set(_SCALAR_TAGS) | {f"{g}{_LEARNING_RATE_SUFFIX}" for g in self.optimizers}
        names = [k for k in metrics if k not in not_terms]
        # "total" first, then the family's terms in its order.
        names = sorted(names, key=lambda k: k != "total")
        terms = [f"{k} {metrics[k]:.5f}" for k in names]
        if terms:
            parts.append(" ".join(terms))
        if "psnr" in metrics:
            parts.append(f"psnr {metrics['psnr']:.2f}")
        if "rays_per_second" in metrics:
            parts.append(f"{_format_rate(metrics['rays_per_second'])} rays/s")
        if step_seconds is not None:
            parts.append(f"{step_seconds:.3f} s/step")
            parts.append(f"ETA {format_duration(step_seconds * (num_steps - step))}")
        self.log(" | ".join(parts))


# Metrics that are not loss terms, and their TensorBoard tags (learning rates are
# "<group>_learning_rate" -> "learning_rate/<group>").
_SCALAR_TAGS = {
    "psnr": "metrics/psnr",
    "rays_per_second": "throughput/rays_per_second",
    "samples_per_second": "throughput/samples_per_second",
}
_LEARNING_RATE_SUFFIX = "_learning_rate"


def _check_groups(groups: Mapping[str, family_lib.VariableGroup]) -> None:
    """Raises ValueError for a bad variable-group dict (names, overlaps, empty groups)."""
    if not groups:
        raise ValueError("the model family declared no variable group")
    seen = {}
    for name, group in groups.items():
        if not name.isidentifier():
            # The checkpoint attribute `<name>_optimizer` must be an identifier.
            raise ValueError(f"variable group name {name!r} is not a usable identifier")
        if not isinstance(group, family_lib.VariableGroup):
            raise ValueError(f"variable group {name!r} is a {type(group).__name__}, not a group")
        if not group.variables:
            raise ValueError(f"variable group {name!r} has no variables")
        for variable in group.variables:
            key = id(variable)
            if key in seen:
                raise ValueError(
                    f"variable {variable.name} is in variable groups {seen[key]!r} and {name!r}"
                )
            seen[key] = name
