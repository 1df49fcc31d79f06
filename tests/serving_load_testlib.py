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
    """(valid requests, bad requests): each (signature, inputs, expected error fragment)."""
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
    zero_k = np.zeros([1, 3, 3], np.float32)
    reflected = turned.copy()
    reflected[0, :3] *= -1
    bad = [
        ("render", {"latent": latent[:1, :3], **one}, "latent must be"),
        ("render", {"latent": np.full_like(latent[:1], np.nan), **one}, "latent must be finite"),
        ("render", {"latent": latent[:1], **dict(one, height=np.int32(-2))}, "height must be"),
        ("render", {"latent": latent[:1], **dict(one, width=np.int32(1 << 20))}, "width must be"),
        ("render", {"latent": latent, **one}, "intrinsics must be"),  # batch mismatch
        ("render", {"latent": latent[:1], **dict(one, intrinsics=zero_k)}, "intrinsics must be"),
        (
            "render",
            {"latent": latent[:1], **dict(one, world_to_camera=reflected[None])},
            "world_to_camera must be rigid",
        ),
        (
            "render_identity",
            {"latent_id": np.array([num_latents], np.int64), **one},
            "latent_id must be",
        ),
        (
            "sample_latents",
            {"count": np.int32(0), "seed": np.int64(0), "truncation": np.float32(1)},
            "count must be",
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
                    signature, inputs, fragment = bad[(index // args.bad_every) % len(bad)]
                    try:
                        call(signature, inputs)
                        raise AssertionError(f"bad request accepted: {signature} ({fragment})")
                    except tf.errors.InvalidArgumentError as e:
                        if fragment not in e.message:
                            raise AssertionError(
                                f"{signature}: {fragment!r} not in {e.message[:300]}"
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
