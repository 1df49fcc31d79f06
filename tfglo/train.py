"""`python -m tfglo.train`: trains a model family on a dataset directory (DESIGN.md 2 and 6).

    python -m tfglo.train --flagfile=flags/demo.cfg --dataset=DATA --run_dir=RUN [--num_steps=N]
    python -m tfglo.train --flagfile=flags/nerf_vae_demo.cfg ...   # a flagfile with --model=...

`--model` picks the family (`tfglo.MODEL_FAMILIES`; default lolnerf). Every model, loss,
optimiser, data and schedule setting of every family is a flag with a default, derived from the
family's config dataclasses (`ModelFamily.flag_spec`; a name two families share is one flag
with one meaning); only the chosen family's flags build its configs
(`ModelFamily.configs_from_flags`, which fills what the dataset decides, e.g. LOLNeRF's number
of latents from dataset.json) and are recorded. A flagfile sets many at once, and flags given
AFTER --flagfile on the command line override it (absl reads arguments in order). The resolved
configuration goes to RUN/config.json, checkpoints to RUN/checkpoints, TensorBoard logs to
RUN/tensorboard (`tfglo.engine.launch.train_run`). Running the same command again resumes from
the newest checkpoint; a larger --num_steps continues a finished run.

Exit status: 0 when the run reached --num_steps; 1 on bad input (dataset, run directory, flag
values) or when the loss became non-finite (the message names the last good checkpoint); 130
after Ctrl-C or SIGTERM, which first save a checkpoint of the current step (single-worker runs).
"""

from tfglo.utils import tf_logs

tf_logs.quiet_start()

import os
import signal
import sys

from absl import app, flags, logging

from tfglo.data import dataset_dir
from tfglo.engine import family as family_lib
from tfglo.engine import launch, trainer
from tfglo.utils import configs

FLAGS = flags.FLAGS
FAMILIES = {name: family_lib.get_family(name) for name in family_lib.family_names()}
# Every family's flags (one flag per shared name, same meaning checked) and the app's own.
FLAG_SPEC = configs.FlagSet(
    "tfglo.train",
    {name: family.flag_spec() for name, family in FAMILIES.items()},
    extra=(
        configs.Flag(
            "model",
            "enum",
            "lolnerf",
            "The model family to train (tfglo.MODEL_FAMILIES).",
            enum_values=tuple(FAMILIES),
        ),
        configs.Flag("dataset", "string", None, "Dataset directory (python -m tfglo.prepare)."),
        configs.Flag(
            "run_dir", "string", None, "Run directory: config.json, checkpoints/, tensorboard/."
        ),
    ),
    selector="model",
    # Each family's data pipeline words its seed's use its own way; one meaning for the flag.
    shared_help={
        "seed": "Seeds weight initialisation and the data pipeline (shuffles, pixel sampling "
        "and, for NeRF-VAE, the choice of views).",
        "shuffle_buffer": "Items held in the shuffle buffer: images (LOLNeRF) or scenes "
        "(NeRF-VAE), capped at the number the pipeline has.",
    },
)
# Names of this app's flags. Defined at import: in-process users (tests, ablations) parse the
# global FLAGS of this module.
FLAG_NAMES = FLAG_SPEC.names
FLAG_SPEC.define(FLAGS)


def flag_values() -> dict:
    """The values of this app's flags, every family's (JSON-able)."""
    return FLAG_SPEC.values(FLAGS)


def flagfile_values(flagfile: str | os.PathLike | None = None, **overrides) -> dict:
    """This app's flag values from a flagfile and overrides, without touching the global FLAGS.

    For programs that train in-process (the demo, ablations): the same values as
    `python -m tfglo.train --flagfile=FILE --name=value ...` would use. See
    `configs.FlagTable.flagfile_values`.
    """
    return FLAG_SPEC.flagfile_values(flagfile, **overrides)


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
        family, values = FAMILIES[FLAGS.model], flag_values()
        FLAG_SPEC.check_unused(family.name, values)  # another family's flag: an error
        built = family.configs_from_flags(values, metadata)
        train_config = built[family_lib.TRAIN_SECTION]
        strategy = trainer.make_strategy(train_config.strategy, train_config.tpu)
        # SIGTERM (a scheduler's preemption, `kill`) saves a checkpoint like Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
        used = FLAG_SPEC.values_of(family.name, values)
        launch.train_run(family, built, FLAGS.dataset, FLAGS.run_dir, used, strategy=strategy)
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
