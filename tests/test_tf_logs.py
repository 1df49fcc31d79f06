"""The apps keep TensorFlow's C++ start-up lines out of their output (`tfglo.utils.tf_logs`),
and `TFGLO_TF_LOGS=1` brings them back.

The subprocess runs start from an environment without TF_CPP_MIN_LOG_LEVEL (as a user's shell),
so what they show is what a user sees.
"""

import os
import subprocess
import sys

import app_testlib
import pytest
from absl.testing import parameterized

from tfglo.utils import tf_logs

# What TensorFlow 2.21 printed on the CPU machine these tests were written on (see tf_logs).
KNOWN = (
    "All log messages before absl::InitializeLog()",
    "cudart_stub.cc",
    "failed call to cuInit",
    "cpu_feature_guard.cc",
    "oneDNN custom operations",
)


class IsNoiseTest(parameterized.TestCase):
    @parameterized.named_parameters(
        (
            "absl_banner",
            "WARNING: All log messages before absl::InitializeLog() is called are written to "
            "STDERR",
            True,
        ),
        (
            "info_before_absl_init",
            "I0000 00:00:1796065570.476183   18908 cudart_stub.cc:31] Could not find cuda "
            "drivers on your machine, GPU will not be used.",
            True,
        ),
        (
            "cuinit_error",
            "E0000 00:00:1796065598.849009   18908 cuda_platform.cc:52] failed call to cuInit: "
            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
            True,
        ),
        (
            "warning_after_init",
            "W0512 13:01:02.123456    1234 tensorflow/core/foo.cc:3] something",
            True,
        ),
        ("cpu_guard_continuation", "To enable the following instructions: AVX2 FMA, in", True),
        (
            "another_error",
            "E0000 00:00:1796065598.849009   18908 gpu_device.cc:9] failed to load libcudnn",
            False,
        ),
        (
            "fatal",
            "F0000 00:00:1796065598.849009   18908 foo.cc:9] Check failed: x",
            False,
        ),
        ("python_warning", "UserWarning: something the app should see", False),
        ("traceback", "Traceback (most recent call last):", False),
    )
    def test_is_noise(self, line, expected):
        self.assertEqual(tf_logs.is_noise(line), expected)


@pytest.mark.parametrize(
    "value, expected", [("", False), ("0", False), ("false", False), ("1", True), ("yes", True)]
)
def test_opted_in(value, expected):
    assert tf_logs.opted_in({tf_logs.OPT_IN: value}) is expected


def _run_help(**extra_env) -> str:
    """`python -m tfglo.prepare --help` from a minimal environment; its stdout + stderr."""
    env = {
        key: os.environ[key]
        for key in ("PATH", "HOME", "LANG", "PYTHONPATH", "TMPDIR")
        if key in os.environ
    }
    env.update(extra_env)
    result = subprocess.run(
        [sys.executable, "-m", "tfglo.prepare", "--help"],
        cwd=app_testlib.REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert "--source" in output, output[-3000:]  # the help itself came out
    return output


def test_app_output_has_no_tensorflow_start_up_lines_unless_asked():
    quiet = _run_help()
    noisy = [line for line in quiet.splitlines() if tf_logs.is_noise(line)]
    assert not noisy, noisy
    for text in KNOWN:
        assert text not in quiet, text
    loud = _run_help(**{tf_logs.OPT_IN: "1"})
    back = [line for line in loud.splitlines() if tf_logs.is_noise(line)]
    if not back:
        pytest.skip("TensorFlow printed no start-up line on this machine, even when asked")
    assert any(text in loud for text in KNOWN), back
