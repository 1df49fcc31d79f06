"""Keeps TensorFlow's C++ start-up lines out of the apps' output.

Importing TensorFlow and querying its devices prints, from its C++ runtime and before any line of
the app, lines that read as errors on a machine without a GPU. Measured with TF 2.21 on a CPU
machine, and what each needs:

- "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" and
  "I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be
  used." (twice, during `import tensorflow`): absl logging before it is set up; no environment
  variable hides them (TF_CPP_MIN_LOG_LEVEL=3 does not).
- "I0000 ... cpu_feature_guard.cc:...] This TensorFlow binary is optimized to use ..." and its
  "To enable the following instructions: ..." line, and the oneDNN notice: INFO, hidden by
  TF_CPP_MIN_LOG_LEVEL >= 1.
- "E0000 ... cuda_platform.cc:52] failed call to cuInit: ..." at the first device query: an ERROR
  line, hidden only by TF_CPP_MIN_LOG_LEVEL=3, which would also hide every later C++ error.

So `quiet_start()` sets TF_CPP_MIN_LOG_LEVEL=2 (unless the environment sets it: INFO and WARNING
lines hidden, errors kept for the whole run), and runs `import tensorflow` and the device query
(`tf.config.list_physical_devices`, which creates no runtime context, so a
MultiWorkerMirroredStrategy or logical devices can still be set up after it) with file
descriptor 2 pointed at a temporary file. It then writes back what it captured, except C++ log
lines at INFO or WARNING, the ERROR lines known to be harmless (`HARMLESS_ERRORS`: no CUDA driver,
GPU libraries registered twice), the absl banner and the cpu_feature_guard continuation line.
Anything else (a Python warning, a traceback, another C++ error) is still printed.

The way back: `TFGLO_TF_LOGS=1` in the environment; `quiet_start()` then changes nothing and
TensorFlow prints what it prints.

Apps call `quiet_start()` first, before importing library code (which imports TensorFlow).
"""

import os
import re
import sys
import tempfile

OPT_IN = "TFGLO_TF_LOGS"
MIN_LOG_LEVEL = "2"

# A C++ log line (absl's and TensorFlow's format): severity letter, MMDD, time (before absl is set
# up: 00:00:<seconds since the epoch>), thread id, file:line].
_CPP_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [\w.\-/]+:\d+\]")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_GUARD_CONTINUATION = "To enable the following instructions:"
# ERROR lines printed at start-up on machines without a (usable) GPU, or by TF's GPU libraries
# registering themselves twice: not errors of the app.
HARMLESS_ERRORS = (
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "could not open file to read NUMA node",
)


def opted_in(environ=None) -> bool:
    """True when the user asked for TensorFlow's own start-up lines (TFGLO_TF_LOGS=1)."""
    value = (os.environ if environ is None else environ).get(OPT_IN, "")
    return value.strip().lower() not in ("", "0", "false", "no")


def is_noise(line: str) -> bool:
    """Whether a captured start-up line is one `quiet_start` drops (see the module docstring)."""
    if line.startswith(_BANNER) or line.startswith(_CPU_GUARD_CONTINUATION):
        return True
    match = _CPP_LINE.match(line)
    if not match:
        return False
    return match[1] in "IW" or any(text in line for text in HARMLESS_ERRORS)


def quiet_start(import_tensorflow: bool = True) -> None:
    """Imports TensorFlow without its C++ start-up lines (unless TFGLO_TF_LOGS=1).

    Args:
      import_tensorflow: False: only set TF_CPP_MIN_LOG_LEVEL (for an app that starts other
        processes and imports no TensorFlow itself).
    """
    if opted_in():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", MIN_LOG_LEVEL)
    if not import_tensorflow or "tensorflow" in sys.modules:
        return  # already imported: its start-up lines are out already
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
