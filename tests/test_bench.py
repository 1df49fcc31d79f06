"""`python -m tfglo.bench`: every benchmark runs (at its `--quick` size) and a failure is an error.

Both tests run the app in a fresh process, as a user does. The quick run takes ~1-2 minutes on 2
busy cores (most of it: the serving export, the mesh child process, NeRF-VAE's model build); its
numbers only show that each benchmark works, never how fast.
"""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

from tfglo import bench

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _run(args, code=None, timeout=600):
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "tfglo.bench"]
    return subprocess.run(
        command + list(args),
        cwd=REPO_ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _lines(stdout: str) -> dict[str, list[str]]:
    """Report lines by benchmark name (`name key=value ...`)."""
    lines = {}
    for line in stdout.splitlines():
        if re.match(r"^[a-z_]+ [a-z_]+=", line):
            lines.setdefault(line.split()[0], []).append(line)
    return lines


def test_every_benchmark_has_a_quick_size():
    """A new benchmark must say how to run it tiny, or the quick run would run it full size."""
    assert sorted(bench.QUICK) == sorted(bench.BENCHMARKS)


def test_every_benchmark_runs_at_its_quick_size():
    result = _run(["--quick"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    lines = _lines(result.stdout)
    assert float(re.search(r"gflops=([0-9.e+]+)", lines["matmul_peak"][0]).group(1)) > 0
    for name in bench.BENCHMARKS:
        # Each benchmark printed its own line (the pipeline benchmark also prints
        # `pipeline_vs_train_step`), and none an error.
        assert name in lines, (name, result.stdout[-3000:])
        for line in lines[name]:
            assert "error=" not in line, line
    assert "error=" not in result.stdout


# A run of the app with planted benchmarks: `broken` raises, `missing` names no function; the
# real `synthetic` ones around them must still run and report.
_PLANTED = textwrap.dedent(
    """
    from tfglo import bench

    def broken(peak_gflops, **sizes):
        raise RuntimeError("planted failure")

    bench.BENCHMARKS.update(broken="__main__:broken", missing="__main__:no_such_function")
    bench.run()
    """
)


def test_a_failing_benchmark_makes_bench_exit_non_zero():
    result = _run(["--quick", "--only=synthetic,broken,missing,synthetic_shapes"], code=_PLANTED)
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    lines = _lines(result.stdout)
    assert lines["broken"] == ['broken error="RuntimeError: planted failure"'], result.stdout
    assert "AttributeError" in lines["missing"][0]
    # The others still ran, before and after the failures.
    assert "images_per_s=" in lines["synthetic"][0]
    assert "images_per_s=" in lines["synthetic_shapes"][0]
    assert "bench: 2 of 4 benchmarks failed: broken, missing" in result.stderr
    assert "Traceback" in result.stderr and "planted failure" in result.stderr


def test_an_unknown_benchmark_name_is_a_usage_error():
    result = _run(["--only=no_such_benchmark"])
    assert result.returncode != 0
    assert "unknown benchmarks ['no_such_benchmark']" in result.stderr
