"""The product's 3D claim, gated in CI: single-view training on pose-varied synthetic heads beats
the billboard baseline on held-out views (issue 14, item 1).

One training per test session at a reduced demo size (flags/demo.cfg with a 4 x 64 foreground,
16 + 16 samples, 512 rays x 300 steps; 16 heads at 24 x 24, one training view each at yaw
+-30 deg, two held-out views each over yaw -35..35 deg), seeds fixed.

Measured (this machine, 2 cores shared with other jobs, load average 8-12: ~160-200 s there,
of which training ~145 s; an idle 2-core machine is several times faster), same numbers on
repeated runs:
  demo.cfg weights (mask 0.1, hard surface 0.01): model PSNR 20.95 dB, SSIM 0.58, foreground
    depth error 0.119; billboard 18.99 dB, 0.38, 0.582 (margin +1.95 dB, depth ratio 0.20);
  mask 1.0, hard surface 0.1: model 20.24 dB, 0.53, 0.108 (margin +1.24 dB, ratio 0.19).
The gate asks for >= 0.75 dB and at most half the billboard's depth error, so changes of the
default loss weights that keep the method working do not trip it, while a model that learns no
3D shape (the billboard's flat depth or worse) does.
"""

import keras
import numpy as np

from tfglo import train as train_app
from tfglo.data import dataset_dir
from tfglo.data.synthetic import heads as synthetic
from tfglo.engine import evaluation, trainer
from tfglo.engine import run_dir as run_dir_lib
from tfglo.lolnerf import family as lolnerf_family

PSNR_MARGIN_DB = 0.75
DEPTH_RATIO = 0.5
SETTINGS = dict(
    num_steps=300,
    lr_decay_steps=300,
    fg_width=64,
    num_coarse=16,
    num_fine=16,
    images_per_batch=16,
    rays_per_image=32,
    image_summary_every=0,
    log_every=100,
)


def test_model_beats_the_billboard_on_held_out_views(tmp_path, repo_root):
    config = synthetic.SyntheticConfig(
        num_objects=16, image_size=24, eval_views_per_object=2, seed=0
    )
    data = tmp_path / "data"
    with dataset_dir.DatasetWriter(data) as writer:
        writer.metadata.update(synthetic.dataset_metadata(config))
        for record in synthetic.generate(config):
            writer.write(record)
    values = train_app.flagfile_values(repo_root / "flags" / "demo.cfg", **SETTINGS)
    metadata = dataset_dir.read_metadata(data)
    configs = lolnerf_family.FAMILY.configs_from_flags(values, metadata)
    run = tmp_path / "run"
    run_dir_lib.write_config(
        run, run_dir_lib.make_config("lolnerf", configs, data, metadata, values)
    )
    keras.utils.set_random_seed(0)
    trainer.Trainer(lolnerf_family.FAMILY, configs, run, data, log=lambda line: None).train()

    report = evaluation.evaluate_run(run_dir_lib.load_run(run), data, evaluation.EvaluateConfig())
    model, board = report["model"], report["billboard"]
    summary = (
        f"model {model['psnr']:.2f} dB / depth {model['depth_abs']:.3f}, "
        f"billboard {board['psnr']:.2f} dB / depth {board['depth_abs']:.3f}"
    )
    print(summary)
    assert np.isfinite(model["psnr"]) and np.isfinite(board["psnr"]), summary
    assert model["psnr"] >= board["psnr"] + PSNR_MARGIN_DB, summary
    assert model["depth_abs"] <= DEPTH_RATIO * board["depth_abs"], summary
