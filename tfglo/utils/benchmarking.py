"""Helpers for benchmarks: a matmul peak measured in the same process, and one-line reports.

Benchmarks print `name key=value ...` lines. Speed targets are ratios to the matmul peak measured
in the same run (machines here are noisy; ratios travel, seconds do not).
"""

import time

import tensorflow as tf


def time_call(fn, min_seconds: float = 1.0, warmup: int = 1) -> float:
    """Returns the mean seconds per call of `fn()` over at least `min_seconds` (after warm-up).

    `fn` must block until its work is done (e.g. return a tensor that is read with `.numpy()`).
    """
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def matmul_peak_gflops(size: int = 2048, min_seconds: float = 1.5) -> float:
    """Measures float32 matmul throughput in GFLOP/s (2 n^3 FLOPs per n x n product)."""
    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    b = tf.random.stateless_normal([size, size], seed=[3, 4])
    matmul = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]))
    seconds = time_call(lambda: matmul().numpy(), min_seconds=min_seconds, warmup=2)
    return 2.0 * size**3 / seconds / 1e9


def format_line(name: str, **values) -> str:
    """`name key=value ...` with floats at 4 significant digits."""
    parts = [name]
    for key, value in values.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def report(name: str, **values) -> str:
    """Prints and returns one benchmark line."""
    line = format_line(name, **values)
    print(line, flush=True)
    return line
