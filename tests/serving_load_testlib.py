"""A soak of an exported SavedModel: many small requests from several threads, RSS sampled.

Run as a script in a fresh process (`python tests/serving_load_testlib.py EXPORT_DIR OUT.json
--requests=N --threads=T`), so the figures are the export's alone. Every thread cycles through
the same list of requests: the five signatures with small, valid inputs, and every
`bad_every`-th request a bad one (each of the rejection cases below) that must fail with
InvalidArgumentError naming the input. A valid request's outputs must equal the reference
computed for it before the threads start (bit-for-bit: concurrency must not change a result).
RSS (resident set, /proc/self/statm) is sampled every `sample_every` requests; the warm-up is
the first `warmup` requests (graph optimisation per signature and input shape, per-thread
allocator arenas, TensorFlow's caches). The result is written as JSON: counts, errors, RSS
samples and the growth after warm-up.
"""

import argparse
import json
import os
import re
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Resident set size of this process now, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def requests(latent_dim: int, num_latents: int) -> tuple[list, list]:
    """(valid requests, bad requests) for an export of `latent_dim`, `num_latents`.

    Valid: (signature, inputs, None). Bad: (name, signature, inputs, regex of the error).
    """
    k = np.array([[8.0, 0.0, 3.0], [0.0, 8.0, 2.5], [0.0, 0.0, 1.0]], np.float32)
    w2c = np.concatenate([np.eye(3), [[0.0], [0.0], [3.0]]], 1).astype(np.float32)
    yaw = 0.4
    turned = w2c.copy()
    turned[:, :3] = np.array(
        [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]], np.float32
    )
    rng = np.random.default_rng(0)
    latent = rng.normal(0, 0.5, [2, latent_dim]).astype(np.float32)
    camera = {
        "intrinsics": np.stack([k, k]),
        "world_to_camera": np.stack([w2c, turned]),
        "height": np.int32(5),
        "width": np.int32(6),
    }
    one = {
        "intrinsics": k[None],
        "world_to_camera": turned[None],
        "height": np.int32(4),
        "width": np.int32(4),
    }
    valid = [
        ("render", {"latent": latent, **camera}, None),
        ("serving_default", {"latent": latent[:1], **one}, None),
        (
            "render_identity",
            {"latent_id": np.array([0, num_latents - 1], np.int64), **camera},
            None,
        ),
        (
            "sample_latents",
            {"count": np.int32(3), "seed": np.int64(5), "truncation": np.float32(0.7)},
            None,
        ),
        (
            "orbit_cameras",
            {
                "num_views": np.int32(3),
                "radius": np.float32(3.0),
                "yaw_min": np.float32(-0.5),
                "yaw_max": np.float32(0.5),
                "pitch_min": np.float32(0.0),
                "pitch_max": np.float32(0.2),
                "height": np.int32(4),
                "width": np.int32(4),
                "focal_factor": np.float32(1.5),
            },
            None,
        ),
    ]

    def camera_with(**changes):
        return {"latent": latent[:1], **dict(one, **changes)}

    def changed(array, index, value):
        array = np.array(array, np.float32)
        array[index] = value
        return array

    k1, w1 = one["intrinsics"], one["world_to_camera"]
    reflected = changed(w1, (0, 0, slice(0, 3)), -w1[0, 0, :3])
    scaled = changed(w1, (0, slice(None), slice(0, 3)), 2.0 * w1[0, :, :3])
    sample = {"count": np.int32(2), "seed": np.int64(0), "truncation": np.float32(1)}
    orbit = dict(valid[4][1])
    huge = np.int32(2**31 - 1)
    # (name, signature, inputs, regex the InvalidArgumentError message must match: names the
    # input). Every kind of bad request the issue lists, on every signature it applies to.
    bad = [
        ("latent_dim", "render", camera_with(latent=latent[:1, :3]), r"latent must be \[B, D\]"),
        ("latent_rank", "render", camera_with(latent=latent[0]), r"latent must be \[B, D\]"),
        ("latent_empty", "render", camera_with(latent=latent[:0]), r"latent must be .*B >= 1"),
        (
            "latent_nan",
            "render",
            camera_with(latent=np.full_like(latent[:1], np.nan)),
            "latent must be finite",
        ),
        (
            "latent_inf",
            "serving_default",
            camera_with(latent=changed(latent[:1], (0, 2), np.inf)),
            "latent must be finite",
        ),
        ("height_negative", "render", camera_with(height=np.int32(-2)), "height must be"),
        ("height_zero", "serving_default", camera_with(height=np.int32(0)), "height must be"),
        ("height_huge", "render", camera_with(height=huge), "height must be"),
        ("width_huge", "render", camera_with(width=np.int32(1 << 20)), "width must be"),
        ("width_rank", "render", camera_with(width=np.int32([4, 4])), "width must be"),
        # Batch mismatches: two latents, one camera; one latent, two world_to_camera.
        ("batch_latent_vs_cameras", "render", {"latent": latent, **one}, "intrinsics must be"),
        (
            "batch_world_to_camera",
            "render",
            camera_with(world_to_camera=camera["world_to_camera"]),
            "world_to_camera must be",
        ),
        (
            "batch_ids_vs_cameras",
            "render_identity",
            {"latent_id": np.array([0, 1], np.int64), **one},
            "intrinsics must be",
        ),
        (
            "id_too_large",
            "render_identity",
            {"latent_id": np.array([num_latents], np.int64), **one},
            "latent_id must be",
        ),
        (
            "id_negative",
            "render_identity",
            {"latent_id": np.array([-1], np.int64), **one},
            "latent_id must be",
        ),
        # Cameras, for what they mean.
        ("k_zero", "render", camera_with(intrinsics=k1 * 0), "intrinsics must be pinhole"),
        (
            "k_zero_focal",
            "render_identity",
            {
                "latent_id": np.array([0], np.int64),
                **dict(one, intrinsics=changed(k1, (0, 1, 1), 0)),
            },
            "intrinsics must be pinhole",
        ),
        (
            "k_negative_focal",
            "render",
            camera_with(intrinsics=changed(k1, (0, 0, 0), -8.0)),
            "intrinsics must be pinhole",
        ),
        (
            "k_nan",
            "render",
            camera_with(intrinsics=changed(k1, (0, 0, 2), np.nan)),
            "intrinsics must be finite",
        ),
        (
            "k_inf",
            "render",
            camera_with(intrinsics=changed(k1, (0, 1, 1), np.inf)),
            "intrinsics must be finite",
        ),
        (
            "w2c_reflection",
            "render",
            camera_with(world_to_camera=reflected),
            "world_to_camera must be rigid",
        ),
        (
            "w2c_scaled",
            "render",
            camera_with(world_to_camera=scaled),
            "world_to_camera must be rigid",
        ),
        (
            "w2c_shear",
            "render_identity",
            {
                "latent_id": np.array([0], np.int64),
                **dict(one, world_to_camera=changed(w1, (0, 0, 1), 0.3)),
            },
            "world_to_camera must be rigid",
        ),
        (
            "w2c_nan",
            "render",
            camera_with(world_to_camera=changed(w1, (0, 2, 3), np.nan)),
            "world_to_camera must be finite",
        ),
        # Sizes and values of the other signatures.
        ("count_zero", "sample_latents", dict(sample, count=np.int32(0)), "count must be"),
        ("count_negative", "sample_latents", dict(sample, count=np.int32(-3)), "count must be"),
        ("count_huge", "sample_latents", dict(sample, count=huge), "count must be"),
        (
            "truncation_nan",
            "sample_latents",
            dict(sample, truncation=np.float32(np.nan)),
            "truncation must be",
        ),
        ("views_negative", "orbit_cameras", dict(orbit, num_views=np.int32(-1)), "num_views must"),
        ("views_huge", "orbit_cameras", dict(orbit, num_views=huge), "num_views must be"),
        ("orbit_width_huge", "orbit_cameras", dict(orbit, width=huge), "width must be"),
        ("radius_inf", "orbit_cameras", dict(orbit, radius=np.float32(np.inf)), "radius must be"),
        ("yaw_nan", "orbit_cameras", dict(orbit, yaw_min=np.float32(np.nan)), "yaw_min must be"),
        (
            "focal_negative",
            "orbit_cameras",
            dict(orbit, focal_factor=np.float32(-1)),
            "focal_factor must be",
        ),
    ]
    return valid, bad


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("output")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--bad_every", type=int, default=10)
    parser.add_argument("--sample_every", type=int, default=50)
    args = parser.parse_args()
    start_rss = rss_mb()
    loaded = tf.saved_model.load(args.export_dir)
    info = json.load(open(os.path.join(args.export_dir, "assets.extra", "tfglo_export.json")))
    valid, bad = requests(info["latent_dim"], info["num_latents"])

    def call(signature, inputs):
        out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in out.items()}

    references = [call(signature, inputs) for signature, inputs, _ in valid]
    loaded_rss = rss_mb()
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "rejected": 0, "errors": [], "samples": []}
    begin = time.perf_counter()

    def worker():
        while True:
            with lock:
                index = state["next"]
                if index >= args.requests:
                    return
                state["next"] += 1
            try:
                if args.bad_every and index % args.bad_every == args.bad_every - 1:
                    name, signature, inputs, pattern = bad[(index // args.bad_every) % len(bad)]
                    try:
                        call(signature, inputs)
                        raise AssertionError(f"bad request {name} accepted by {signature}")
                    except tf.errors.InvalidArgumentError as e:
                        if not re.search(pattern, e.message):
                            raise AssertionError(
                                f"{name}: {pattern!r} not in {e.message[:300]}"
                            ) from e
                    with lock:
                        state["rejected"] += 1
                else:
                    which = index % len(valid)
                    out = call(valid[which][0], valid[which][1])
                    for name, value in references[which].items():
                        if not np.array_equal(out[name], value):
                            raise AssertionError(
                                f"{valid[which][0]}/{name} differs from its reference"
                            )
                    with lock:
                        state["ok"] += 1
            except Exception as e:  # noqa: BLE001 - recorded, the test fails on any
                with lock:
                    state["errors"].append(f"request {index}: {type(e).__name__}: {str(e)[:300]}")
            if index % args.sample_every == 0:
                sample = (index, time.perf_counter() - begin, rss_mb())
                with lock:
                    state["samples"].append(sample)

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - begin
    samples = sorted(state["samples"])
    after = [rss for index, _, rss in samples if index >= args.warmup]
    result = {
        "requests": args.requests,
        "threads": args.threads,
        "ok": state["ok"],
        "rejected": state["rejected"],
        "errors": state["errors"][:20],
        "num_errors": len(state["errors"]),
        "seconds": seconds,
        "requests_per_s": args.requests / seconds,
        "start_rss_mb": start_rss,
        "loaded_rss_mb": loaded_rss,
        "warm_rss_mb": after[0] if after else None,
        "end_rss_mb": rss_mb(),
        "max_rss_after_warmup_mb": max(after) if after else None,
        "samples": samples,
    }
    result["growth_after_warmup_mb"] = result["end_rss_mb"] - (result["warm_rss_mb"] or 0.0)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
