"""The training loop: a custom loop under a `tf.distribute` strategy (DESIGN.md sections 2, 6).

`Trainer` owns one model, two Adam optimisers (network weights; latent table, whose gradient is a
sparse `tf.IndexedSlices`), a step counter, a `tf.train.CheckpointManager` and TensorBoard writers.
It is generic: the model, the loss and the per-replica dataset are passed in as callables, so the
machinery is tested with a tiny stand-in model; `train` wires it to LOLNeRF, the LOLNeRF losses
and the ray-batch pipeline, and is what `python -m tfglo.train` calls.

Distribution. Everything with state (model, both optimisers, step) is created inside
`strategy.scope()` and fully built *before* the first `tf.function` runs: Keras 3 creates optimiser
slots lazily on the first `apply_gradients`, which fails under MirroredStrategy when it happens
inside a `tf.function`, so `optimizer.build(variables)` is called in scope. Each replica gets its
share of the global batch, computes its mean loss, and scales it by its share of the global rays
(`local_rays / global_rays`); the optimisers all-reduce (sum) the gradients across replicas, so
the update equals the one for the global batch on one device, latent `IndexedSlices` included.

Checkpoints. `run_dir/checkpoints/ckpt-<step>` every `checkpoint_every` steps and at the end
(`tf.train.Checkpoint(model=, network_optimizer=, latent_optimizer=, step=)`), the newest
`keep_checkpoints` kept. A new `Trainer` on the same run directory restores the newest one, so a
run killed at any moment (even SIGKILL during a save: TensorFlow renames the checkpoint into
place, and the `checkpoint` index is replaced atomically) resumes where its last checkpoint left
it, with the step count, the learning-rate schedules and Adam's moments intact. A non-finite loss
stops the run with `NonFiniteLossError` and does not save the bad state. In multi-worker training
only the chief writes checkpoints and summaries; the other workers save into a temporary directory
they delete (saving may need every worker), and write summaries nowhere.
"""

import dataclasses
import inspect
import math
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfglo.data import pipeline
from tfglo.geometry import camera as camera_lib
from tfglo.lolnerf import latents
from tfglo.lolnerf import model as lolnerf
from tfglo.nerf import losses

STRATEGIES = ("mirrored", "multi_worker", "tpu", "one_device")
LATENT_OPTIMIZERS = ("lazy_adam", "adam")
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_PREFIX = "ckpt"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, checkpoint, logging and distribution settings.

    The batch (images per step, rays per image) belongs to the data configuration
    (`pipeline.RayBatchConfig`), which is the one place it is set.

    Attributes:
      num_steps: total optimisation steps of the run (a resumed run stops at the same number).
      network_learning_rate: Adam learning rate of the field weights at step 0.
      latent_learning_rate: Adam learning rate of the latent table at step 0 (own optimiser).
      decay_rate: both learning rates are multiplied by this every `decay_steps` steps
        (continuous exponential decay: lr(step) = lr * decay_rate ** (step / decay_steps)).
      decay_steps: see `decay_rate`.
      adam_beta1, adam_beta2, adam_epsilon: Adam's moment decay rates and epsilon (both
        optimisers).
      latent_optimizer: "lazy_adam" (`latents.LazyAdam`: a step moves only the table rows in
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
    strategy: str = "mirrored"
    tpu: str = ""
    jit_compile: bool = False
    seed: int = 0

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


def _remove_orphans(directory: pathlib.Path, keep: list[str]) -> None:
    """Deletes checkpoint files a killed save left behind (not listed in the index)."""
    kept = {pathlib.Path(p).name for p in keep}
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

ModelFn = Callable[[], keras.Model]
LossFn = Callable[[dict, dict], tuple[tf.Tensor, dict]]
DatasetFn = Callable[[tf.distribute.InputContext, int], tf.data.Dataset]
ImageSummaryFn = Callable[[keras.Model], dict[str, np.ndarray]]


class Trainer:
    """A custom training loop with two optimisers under a `tf.distribute` strategy.

    Usage:
        trainer = Trainer(config, run_dir, build_model, loss_fn, dataset_fn)  # restores if it can
        result = trainer.train()  # to config.num_steps; raises NonFiniteLossError on NaN

    The model must provide `network_variables` and `latent_variables` (lists of variables for the
    two optimisers) and may provide `build_all()` (creates every variable; called in scope).
    `model(batch, training=True)` returns a render dict; `loss_fn(render, batch)` returns
    `(scalar loss, {name: scalar})`, the mean over the replica's rays. Batches hold "rgb"
    `[N, 3]` (its leading dimension counts the rays); render["weights"] `[N, S]`, when present,
    gives the samples per ray for the samples/s figure.

    Attributes:
      config: the `TrainConfig`.
      strategy: the distribution strategy.
      model, network_optimizer, latent_optimizer: built in `strategy.scope()`.
      step: int64 variable, the number of optimisation steps taken.
      checkpoint: `tf.train.Checkpoint(model=, network_optimizer=, latent_optimizer=, step=)`.
      manager: its `tf.train.CheckpointManager` (chief: run_dir/checkpoints; others: a temp dir).
      is_chief: whether this process writes checkpoints and summaries.
      restored_from: checkpoint prefix restored at construction, or None.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: os.PathLike | str,
        build_model: ModelFn,
        loss_fn: LossFn,
        dataset_fn: DatasetFn,
        strategy: tf.distribute.Strategy | None = None,
        image_summary_fn: ImageSummaryFn | None = None,
        log: Callable[[str], None] = print_line,
    ):
        """Builds model and optimisers in scope and restores the newest checkpoint.

        Args:
          config: training settings.
          run_dir: the run directory (checkpoints/ and tensorboard/ go inside).
          build_model: returns a new (unbuilt) model; called once inside `strategy.scope()`.
          loss_fn: `(render, batch) -> (loss, terms)`, a per-replica mean.
          dataset_fn: `(input_context, start_step) -> tf.data.Dataset` of per-replica batches
            (`input_context.get_per_replica_batch_size` and sharding are its business);
            `start_step` lets it reseed so a resumed run does not replay the first batches.
          strategy: defaults to `make_strategy(config.strategy, config.tpu)`.
          image_summary_fn: `model -> {tag: [k, h, w, c] float in [0, 1]}`, called on the chief
            every `config.image_summary_every` steps.
          log: receives the console progress lines.
        """
        self.config = config
        self.run_dir = pathlib.Path(run_dir)
        self.strategy = strategy or make_strategy(config.strategy, config.tpu)
        self.loss_fn = loss_fn
        self.dataset_fn = dataset_fn
        self.image_summary_fn = image_summary_fn
        self.log = log
        self.is_chief = is_chief(self.strategy)
        self.task_type, self.task_id = task_info(self.strategy)

        with self.strategy.scope():
            self.model = build_model()
            if hasattr(self.model, "build_all"):
                self.model.build_all()
            self.network_variables = list(self.model.network_variables)
            self.latent_variables = list(self.model.latent_variables)
            self.network_optimizer = self._make_optimizer(
                keras.optimizers.Adam, config.network_learning_rate, "network"
            )
            latent_cls = latents.LazyAdam if config.latent_optimizer == "lazy_adam" else None
            self.latent_optimizer = self._make_optimizer(
                latent_cls or keras.optimizers.Adam, config.latent_learning_rate, "latent"
            )
            # Build the slots now, in scope, outside any tf.function (see the module docstring).
            self.network_optimizer.build(self.network_variables)
            self.latent_optimizer.build(self.latent_variables)
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            network_optimizer=self.network_optimizer,
            latent_optimizer=self.latent_optimizer,
            step=self.step,
        )
        self._chief_dir = checkpoint_dir(self.run_dir)
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
        self._model_takes_seed = "seed" in inspect.signature(self.model.call).parameters
        self._compute = tf.function(self._forward_backward, jit_compile=config.jit_compile)
        self._train_step = tf.function(self._distributed_step)
        self._writer = None
        self._iterator = None
        # Console lines at every log_every steps, and at least this often in between.
        self.progress_seconds = 60.0

    # -- construction ---------------------------------------------------------------------------

    def _make_optimizer(self, cls, learning_rate: float, name: str) -> keras.optimizers.Optimizer:
        c = self.config
        schedule = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=c.decay_steps, decay_rate=c.decay_rate
        )
        return cls(
            learning_rate=schedule,
            beta_1=c.adam_beta1,
            beta_2=c.adam_beta2,
            epsilon=c.adam_epsilon,
            name=f"{name}_adam",
        )

    def _restore(self) -> str | None:
        latest = tf.train.latest_checkpoint(str(self._chief_dir))
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
            if self._model_takes_seed:
                render = self.model(batch, training=True, seed=seed)
            else:
                render = self.model(batch, training=True)
            loss, terms = self.loss_fn(render, batch)
            scaled_loss = loss * share
        gradients = tape.gradient(scaled_loss, self.network_variables + self.latent_variables)
        samples_per_ray = 1
        if isinstance(render, dict) and "weights" in render:
            samples_per_ray = render["weights"].shape[-1] or tf.shape(render["weights"])[-1]
        return terms, gradients, samples_per_ray

    def _replica_step(self, batch):
        context = tf.distribute.get_replica_context()
        local_rays = tf.cast(tf.shape(batch["rgb"])[0], tf.float32)
        global_rays = context.all_reduce(tf.distribute.ReduceOp.SUM, local_rays)
        # Each replica's mean weighted by its share of the global batch; summing the replicas'
        # gradients (the optimisers all-reduce them) then gives the global-batch gradient.
        share = local_rays / global_rays
        # Sampling jitter seeded by (run seed, replica, step): a resumed run draws what an
        # uninterrupted one would have.
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        seed = tf.stack([self.config.seed * 1024 + replica, tf.cast(self.step, tf.int32)])
        terms, gradients, samples_per_ray = self._compute(batch, share, seed)
        num_network = len(self.network_variables)
        self.network_optimizer.apply_gradients(zip(gradients[:num_network], self.network_variables))
        self.latent_optimizer.apply_gradients(zip(gradients[num_network:], self.latent_variables))
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

    def learning_rates(self) -> tuple[float, float]:
        """Current (network, latent) learning rates, from the schedules at the current step."""
        return (
            float(self.network_optimizer.learning_rate.numpy()),
            float(self.latent_optimizer.learning_rate.numpy()),
        )

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

    def _write_scalars(self, step: int, metrics: dict[str, float]) -> None:
        with self._summary_writer().as_default(step=step):
            for name, value in metrics.items():
                tf.summary.scalar(_scalar_tag(name), value)
        self._writer.flush()

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

    def train(self, num_steps: int | None = None) -> TrainResult:
        """Trains until the step counter reaches `num_steps` (default `config.num_steps`).

        Saves every `checkpoint_every` steps and at the end (also on KeyboardInterrupt in a
        single-worker run), logs every `log_every` steps.

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
                    if self.is_chief:
                        self._write_scalars(step, metrics)
                    self._progress(step, num_steps, metrics, step_seconds)
                    last_print = time.time()
                    sums, window_steps, window_seconds = {}, 0, 0.0
                elif time.time() - last_print > self.progress_seconds:
                    window = self._window_metrics(sums, window_steps, window_seconds)
                    self._progress(step, num_steps, window, step_seconds)
                    last_print = time.time()
                if step % c.checkpoint_every == 0 or last:
                    self.save()
                    saved_step = step
                if c.image_summary_every and (step % c.image_summary_every == 0 or last):
                    self.write_image_summaries()
        except KeyboardInterrupt:
            if self.task_type is None and saved_step != int(self.step.numpy()):
                self.log(f"interrupted: saving step {int(self.step.numpy())}")
                self.save()
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
        network_lr, latent_lr = self.learning_rates()
        metrics["network_learning_rate"] = network_lr
        metrics["latent_learning_rate"] = latent_lr
        return metrics

    def _progress(self, step, num_steps, metrics, step_seconds) -> None:
        parts = [f"step {step:>{len(str(num_steps))}}/{num_steps}"]
        terms = [
            f"{k} {metrics[k]:.5f}"
            for k in ("total", "rgb_mse", "mask", "hard_surface")
            if k in metrics
        ]
        terms += [
            f"{k} {v:.5f}"
            for k, v in metrics.items()
            if k not in _NON_TERMS and k not in ("total", "rgb_mse", "mask", "hard_surface")
        ]
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


_NON_TERMS = {
    "psnr",
    "rays_per_second",
    "samples_per_second",
    "network_learning_rate",
    "latent_learning_rate",
}

# TensorBoard tags of the scalars (loss terms go under loss/).
_SCALAR_TAGS = {
    "psnr": "metrics/psnr",
    "rays_per_second": "throughput/rays_per_second",
    "samples_per_second": "throughput/samples_per_second",
    "network_learning_rate": "learning_rate/network",
    "latent_learning_rate": "learning_rate/latent",
}


def _scalar_tag(name: str) -> str:
    return _SCALAR_TAGS.get(name, f"loss/{name}")


# ----------------------------------------------------------------------------------------------
# LOLNeRF: the model, losses, ray pipeline and image summaries wired into a Trainer.


class LOLNeRFImageSummaries:
    """Image summaries of a LOLNeRF: reconstructions, novel views, depth, foreground alpha.

    For the first `num_images` training images of the dataset (each its own identity):
    - "images/reconstruction": `[k, H, 2W, 3]` ground truth | render from the training camera;
    - "images/novel_views": `[k, H, V*W, 3]` renders from V cameras on a yaw orbit at the
      training camera's distance, yaw in [-yaw, yaw] (radians), looking at the origin;
    - "images/depth": `[k, H, (1+V)*W, 1]` depth of the training view and the novel views,
      normalised to [0, 1] over the bounding sphere's depth range [distance - r, distance + r]
      with near bright and empty pixels black;
    - "images/alpha": `[k, H, (1+V)*W, 1]` foreground opacity of the same views.
    The images are read from the dataset on the first call (only the chief calls it).

    Args:
      dataset_path: the training dataset directory.
      num_images: identities shown (k).
      num_novel_views: V.
      yaw: half the yaw range of the novel views, radians.
      scene_radius: bounding-sphere radius r, object units.
    """

    def __init__(
        self,
        dataset_path: os.PathLike | str,
        num_images: int = 3,
        num_novel_views: int = 3,
        yaw: float = 0.5,
        scene_radius: float = 1.0,
    ):
        self.dataset_path = str(dataset_path)
        self.num_images = num_images
        self.num_novel_views = num_novel_views
        self.yaw = yaw
        self.scene_radius = scene_radius
        self._views = None

    def _load(self) -> list[dict[str, Any]]:
        views = []
        for features in pipeline.eval_dataset(self.dataset_path, split="train").take(
            self.num_images
        ):
            views.append(
                {
                    "image": features["image"].numpy(),
                    "intrinsics": features["intrinsics"].numpy(),
                    "world_to_camera": features["world_to_camera"].numpy(),
                    "latent_id": int(features["latent_id"].numpy()),
                }
            )
        return views

    def _depth(self, depth, distance) -> np.ndarray:
        near = distance - self.scene_radius
        scaled = 1.0 - (np.asarray(depth) - near) / (2.0 * self.scene_radius)
        return np.where(np.asarray(depth) > 0, np.clip(scaled, 0.0, 1.0), 0.0)

    def __call__(self, model) -> dict[str, np.ndarray]:
        if self._views is None:
            self._views = self._load()
        table = tf.convert_to_tensor(model.latent_table.embeddings)
        rows = {"reconstruction": [], "novel_views": [], "depth": [], "alpha": []}
        yaws = np.linspace(-self.yaw, self.yaw, self.num_novel_views, dtype=np.float32)
        for view in self._views:
            height, width = view["image"].shape[:2]
            latent = table[view["latent_id"]]
            intrinsics = tf.constant(view["intrinsics"])
            distance = float(np.linalg.norm(camera_lib.camera_center(view["world_to_camera"])))
            cameras = [view["world_to_camera"]]
            if self.num_novel_views:
                eyes = camera_lib.orbit_eyes(
                    yaws, np.zeros_like(yaws), np.full_like(yaws, distance)
                )
                cameras += list(camera_lib.look_at(eyes).numpy())
            renders = [
                model.render_image(
                    latent, camera_lib.Camera(intrinsics, tf.constant(w2c)), height, width
                )
                for w2c in cameras
            ]
            rgb = [np.clip(r["rgb"].numpy(), 0.0, 1.0) for r in renders]
            rows["reconstruction"].append(np.concatenate([view["image"], rgb[0]], 1))
            if self.num_novel_views:
                rows["novel_views"].append(np.concatenate(rgb[1:], 1))
            rows["depth"].append(
                np.concatenate([self._depth(r["depth"].numpy(), distance) for r in renders], 1)
            )
            rows["alpha"].append(np.concatenate([r["alpha"].numpy() for r in renders], 1))
        out = {}
        for name, images in rows.items():
            if images:
                stacked = np.stack(images).astype(np.float32)
                if stacked.ndim == 3:
                    stacked = stacked[..., None]
                out[f"images/{name}"] = np.clip(stacked, 0.0, 1.0)
        return out


def lolnerf_trainer(
    dataset_path: os.PathLike | str,
    run_dir: os.PathLike | str,
    model_config,
    loss_config,
    train_config: TrainConfig,
    data_config,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = print_line,
) -> Trainer:
    """A `Trainer` for LOLNeRF on a dataset directory (restores run_dir's newest checkpoint).

    Args:
      dataset_path: the training dataset directory (tfglo.prepare).
      run_dir: the run directory.
      model_config: `config.ModelConfig` (num_latents must cover the dataset's latent ids).
      loss_config: `config.LossConfig`.
      train_config: `TrainConfig`.
      data_config: `pipeline.RayBatchConfig` (global batch: images_per_batch x rays_per_image).
      strategy: default `make_strategy(train_config.strategy, train_config.tpu)`.
      log: receives console lines.
    """

    def build_model():
        return lolnerf.LOLNeRF(model_config)

    def loss_fn(render, batch):
        return losses.total_loss(render, batch, loss_config)

    def dataset_fn(context, start_step):
        return pipeline.train_dataset(dataset_path, data_config, context, start_step=start_step)

    summaries = None
    if train_config.image_summary_every and train_config.summary_images:
        summaries = LOLNeRFImageSummaries(
            dataset_path,
            train_config.summary_images,
            train_config.summary_novel_views,
            train_config.summary_yaw,
            model_config.render.scene_radius,
        )
    return Trainer(
        train_config,
        run_dir,
        build_model,
        loss_fn,
        dataset_fn,
        strategy=strategy,
        image_summary_fn=summaries,
        log=log,
    )
