"""The model-family interface: what the engine asks of a model family, and the family registry.

The engine (trainer, run directory, export) knows no family by name. A family (LOLNeRF,
NeRF-VAE, ...) is a `ModelFamily` subclass in its own subpackage; it declares:

- `name`, `display_name` and `sections`: the config sections it is configured by, name ->
  config dataclass (LOLNeRF: "model", "loss", "train", "data"). The "train" section is the
  engine's `trainer.TrainConfig` (or a subclass): steps, checkpoints, logging, strategy, seed.
  `checkpoint_sections` are those whose change makes the checkpoints unusable (default
  "model"): a run resumes only with the same values there.
- `flag_spec()`: the command-line flags of its sections (a `tfglo.utils.configs.ConfigFlags`:
  flag names, shared names, dataset-derived defaults); `configs_from_flags(values,
  dataset_metadata)` turns their values into its configs, filling what the dataset decides
  (`python -m tfglo.train --model=<name>` calls both; `engine.launch.train_run` trains).
  `describe(configs)`: a few words for the train app's start line (its batch, its latents).
- `build_model(configs)`: a new model with every variable created (the trainer calls it inside
  `strategy.scope()`, `load_run` before restoring).
- `variable_groups(model, configs)`: name -> `VariableGroup` (its variables and the settings of
  its own optimiser: learning rate, exponential decay, optimiser class and arguments). The
  trainer makes one optimiser per group and checkpoints it as `<name>_optimizer`.
- `train_loss(model, batch, configs, seed)`: one replica's forward pass and loss:
  `(loss, terms, render)`, the loss a mean over the replica's rays.
- `dataset_fn(configs, dataset)`: the per-replica tf.data function of the training data.
- `image_summaries(configs, dataset)`: a callable `model -> {tag: images}` for TensorBoard, or
  None; `check_dataset(configs, dataset_metadata)`: refuses training data that does not fit.
- `serving_module(model, configs, export_config)`: the `tf.Module` that `tfglo.export` saves
  (an `engine.serving.RenderModule`).
- `evaluate(run, dataset, **options)`: optional evaluation hook.
- `infer_latents(model, configs, images, intrinsics, world_to_camera, masks, options)`: latent
  codes of new images (`tfglo.lift`): LOLNeRF optimises each code from the latent table's mean
  with the network frozen; an encoder family encodes, then optionally refines the same way.
- `mesh_field(model)`: the foreground field meshes are extracted from (default
  `model.foreground`).

Registry: `get_family(name)` resolves a name through the families registered at run time
(`register_family`, e.g. by a test) and then through `tfglo.MODEL_FAMILIES`, a table of
"module:attribute" strings that is imported only when a name is asked for, so `import tfglo`
and this module import no family (and no TensorFlow).
"""

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# A family's resolved configuration: section name -> config dataclass instance.
Configs = Mapping[str, Any]

TRAIN_SECTION = "train"

# name -> family (or "module:attribute" of one), added at run time; searched before
# tfglo.MODEL_FAMILIES.
_REGISTERED: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The optimiser of one variable group.

    The learning rate decays continuously: lr(step) = learning_rate * decay_rate ** (step /
    decay_steps) (`keras.optimizers.schedules.ExponentialDecay`; decay_rate 1 keeps it constant).

    Attributes:
      learning_rate: the learning rate at step 0.
      decay_rate: multiplies the learning rate every `decay_steps` steps.
      decay_steps: see `decay_rate`.
      optimizer: the optimiser class, called as `optimizer(learning_rate=schedule, name=...,
        **options)` (default `keras.optimizers.Adam`; e.g. `lolnerf.latents.LazyAdam`).
      options: more constructor arguments (beta_1, beta_2, epsilon, ...).
    """

    learning_rate: float
    decay_rate: float = 1.0
    decay_steps: int = 1
    optimizer: Callable[..., Any] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.decay_rate > 0:
            raise ValueError(f"decay_rate must be > 0, got {self.decay_rate}")
        if self.decay_steps < 1:
            raise ValueError(f"decay_steps must be >= 1, got {self.decay_steps}")

    def make(self, name: str):
        """A new optimiser (call inside the strategy's scope); `name` names its variables."""
        import keras

        schedule = keras.optimizers.schedules.ExponentialDecay(
            self.learning_rate, decay_steps=self.decay_steps, decay_rate=self.decay_rate
        )
        cls = self.optimizer or keras.optimizers.Adam
        return cls(learning_rate=schedule, name=name, **dict(self.options))


@dataclasses.dataclass(frozen=True)
class VariableGroup:
    """Variables trained by one optimiser.

    Attributes:
      variables: the group's trainable variables (disjoint from every other group's).
      optimizer: its `OptimizerSettings`.
    """

    variables: Sequence[Any]
    optimizer: OptimizerSettings


class ModelFamily:
    """Base class of a model family (see the module docstring for the contract).

    Subclasses set `name` and `sections` and implement `build_model`, `variable_groups`,
    `train_loss` and `dataset_fn`; the other hooks have defaults.
    """

    name: str = ""
    display_name: str = ""  # in messages ("training LOLNeRF ..."); default: `name`
    sections: Mapping[str, type] = {}
    checkpoint_sections: tuple[str, ...] = ("model",)

    # -- configuration ------------------------------------------------------------------------

    def flag_spec(self):
        """The command-line flags of this family's sections (`tfglo.utils.configs.ConfigFlags`).

        Default: every field of every section, named as the field or as its class's
        `FLAG_NAMES` says (the engine's `trainer.TrainConfig` keeps its `lr_` decay names). A
        family whose sections share a field name (two seeds, ...) overrides this (`naming`,
        `shared`, `defaults_from`). The train app defines the flags of every family; a name two
        families share must mean the same in both (`configs.FlagSet`).
        """
        from tfglo.utils import configs

        return configs.ConfigFlags(self.name, self.sections)

    def configs_from_flags(
        self, values: Mapping[str, Any], dataset_metadata: Mapping[str, Any]
    ) -> dict[str, Any]:
        """This family's configs from flag values (`flag_spec()`'s, extra keys ignored).

        Default: `flag_spec().build(values)`. A family whose settings default to the data (the
        number of latents, the scene radius) overrides this and reads `dataset_metadata`
        (the training dataset's dataset.json).

        Raises:
          ValueError: a value the configs reject, or one that does not fit the dataset (the
            message names the flag).
        """
        del dataset_metadata
        return self.check_configs(self.flag_spec().build(values))

    def describe(self, configs: Configs) -> str:
        """A few words on the model and its batch for the train app's start line ("" default)."""
        del configs
        return ""

    def default_configs(self) -> dict[str, Any]:
        """Every section at its dataclass defaults."""
        return {key: cls() for key, cls in self.sections.items()}

    def check_configs(self, configs: Configs) -> dict[str, Any]:
        """`configs` as a dict with exactly this family's sections, each of its dataclass.

        Raises:
          ValueError: a section is missing, unknown, or of another type.
        """
        missing = sorted(set(self.sections) - set(configs))
        unknown = sorted(set(configs) - set(self.sections))
        if missing or unknown:
            raise ValueError(
                f"{self.name} takes config sections {sorted(self.sections)}; missing {missing}, "
                f"unknown {unknown}"
            )
        for key, cls in self.sections.items():
            if not isinstance(configs[key], cls):
                raise ValueError(
                    f"config section {key!r} of {self.name} must be a {cls.__name__}, got "
                    f"{type(configs[key]).__name__}"
                )
        return dict(configs)

    # -- the model and its training -----------------------------------------------------------

    def build_model(self, configs: Configs):
        """A new model with every variable created (called in `strategy.scope()`)."""
        raise NotImplementedError

    def variable_groups(self, model, configs: Configs) -> dict[str, VariableGroup]:
        """Group name -> `VariableGroup`; names are identifiers (checkpoint attributes)."""
        raise NotImplementedError

    def train_loss(self, model, batch: dict, configs: Configs, seed) -> tuple[Any, dict, dict]:
        """One replica's training forward pass (inside the trainer's `tf.function`).

        Args:
          model: the family's model.
          batch: one replica's batch from `dataset_fn`.
          configs: the run's configuration.
          seed: `[2]` int32 seed for sampling jitter, (run seed x replica, step).

        Returns:
          (loss, terms, render): the scalar loss (a mean over the replica's rays), named scalar
          terms for TensorBoard ("total" first in the console; an "rgb_mse" term adds a PSNR
          metric), and the render dict ({} is fine; `render["weights"]` `[N, S]` gives the
          samples per ray of the samples/s figure).
        """
        raise NotImplementedError

    # Terms of `train_loss` that are batch statistics, not loss terms: averaged over a log
    # window like the terms, then handed to `window_statistics` instead of the console's loss
    # list and TensorBoard's loss/.
    statistic_terms: tuple[str, ...] = ()

    def window_statistics(self, means: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """TensorBoard scalars (tag -> value) and warnings for the console from a log window's
        means of `statistic_terms` (default: none)."""
        del means
        return {}, []

    def num_rays(self, batch: dict):
        """The rays a batch's loss is a mean over: `batch["rgb"]` holds `[..., 3]` targets.

        Each replica's loss is weighted by its share of the global count.
        """
        import tensorflow as tf

        return tf.size(batch["rgb"]) // 3

    def dataset_fn(self, configs: Configs, dataset) -> Callable[[Any, int], Any]:
        """`(input_context, start_step) -> tf.data.Dataset` of one replica's batches.

        Args:
          configs: the run's configuration (the batch size is global; the function divides it
            with `input_context.get_per_replica_batch_size` and shards by input pipeline).
          dataset: the training dataset (directory), as given to the trainer.
        """
        raise NotImplementedError

    def image_summaries(self, configs: Configs, dataset) -> Callable[[Any], dict] | None:
        """`model -> {tag: [k, h, w, c] float in [0, 1]}` for TensorBoard, or None (default)."""
        del configs, dataset
        return None

    def eval_summaries(self, configs: Configs, dataset) -> Callable[[Any], dict] | None:
        """`model -> {tag: float}` scores of a few held-out views for TensorBoard, or None
        (default; also when the dataset has no eval split)."""
        del configs, dataset
        return None

    def check_dataset(self, configs: Configs, dataset_metadata: Mapping[str, Any]) -> None:
        """Raises ValueError when the training data does not fit the configuration (default:
        accepts everything). `dataset_metadata` is the dataset's dataset.json."""
        del configs, dataset_metadata

    # -- inference ----------------------------------------------------------------------------

    def serving_module(self, model, configs: Configs, export_config):
        """The `engine.serving.RenderModule` that exports `model` for TF Serving."""
        raise NotImplementedError(f"model family {self.name!r} has no serving module")

    def evaluate(self, run, dataset, **options):
        """Optional evaluation hook: a report dict for `run` on `dataset`."""
        raise NotImplementedError(f"model family {self.name!r} has no evaluation")

    def infer_latents(
        self, model, configs: Configs, images, intrinsics, world_to_camera, masks=None, options=None
    ) -> tuple[Any, dict]:
        """Latent codes of new images the model never saw (`tfglo.lift`, unseen objects).

        Each family has its own way: LOLNeRF fits a code per image by test-time optimisation
        from the latent table's mean, the network frozen; an encoder family (NeRF-VAE) encodes
        the images in one pass and then, if `options.num_steps` > 0, refines the codes the same
        way.

        Args:
          model: the family's trained model.
          configs: the run's configuration.
          images: `[B, H, W, 3]` float32 in [0, 1], one size.
          intrinsics: `[B, 4]` (fx, fy, cx, cy), pixels.
          world_to_camera: `[B, 3, 4]` OpenCV cameras in the model's canonical frame.
          masks: optional `[B, H, W]` foreground masks in [0, 1].
          options: an `engine.inversion.InversionConfig` (steps, learning rate, rays per image,
            mask weight, fine-tuning); None: its defaults.

        Returns:
          (latents `[B, D]` float32 numpy, stats): stats has at least "method" (how the codes
          were found, in words), "steps", "seconds" and "psnr" (a list of B floats, dB: each
          image against its render with its code).

        Raises:
          ValueError: shapes that do not fit, or a camera that does not see the object.
        """
        del model, configs, images, intrinsics, world_to_camera, masks, options
        raise NotImplementedError(f"model family {self.name!r} cannot infer latents of new images")

    def mesh_field(self, model):
        """The field meshes are extracted from: `field(points [N, S, 3], latents [N, D]) ->
        (density [N, S], rgb [N, S, 3])` (default: `model.foreground`)."""
        return model.foreground


def register_family(name: str, family: "ModelFamily | str") -> None:
    """Makes `family` (an instance, or "module:attribute" of one) resolvable as `name`."""
    _REGISTERED[name] = family


def unregister_family(name: str) -> None:
    """Removes a family added with `register_family` (built-in ones stay)."""
    _REGISTERED.pop(name, None)


def family_names() -> list[str]:
    """Every resolvable family name (built-in and registered), sorted; imports none."""
    import tfglo

    return sorted(set(tfglo.MODEL_FAMILIES) | set(_REGISTERED))


def get_family(name: str) -> ModelFamily:
    """The family registered as `name`, importing its module on first use.

    Raises:
      ValueError: no family has that name.
      TypeError: the name resolves to something that is not a `ModelFamily`.
    """
    import tfglo

    target = _REGISTERED.get(name, tfglo.MODEL_FAMILIES.get(name))
    if target is None:
        raise ValueError(f"unknown model family {name!r}; known: {family_names()}")
    if isinstance(target, str):
        module_name, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
    if isinstance(target, type):
        target = target()
    if not isinstance(target, ModelFamily):
        raise TypeError(f"model family {name!r} resolves to {target!r}, not a ModelFamily")
    return target
