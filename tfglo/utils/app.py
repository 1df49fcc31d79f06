"""Small helpers shared by the absl apps (flag definition, start-up, process memory).

Library code never reads flags; only the apps (`tfglo.evaluate`, `tfglo.render`, `tfglo.export`)
use these.
"""

import resource
import sys

from absl import app, flags

# Flags defined through `define_flag` belong to the app that calls it, not to this module, so
# `--helpshort` (the main module's key flags) and `--help` list them under the app.
flags.disclaim_key_flags()


def define_flag(
    flag_values: flags.FlagValues, kind: str, name: str, default, help_text: str, *args
) -> None:
    """Defines one flag unless `flag_values` already has it (then the existing flag is shared).

    Apps define their flags at start-up rather than at import, and several apps imported into one
    program (e.g. the demo) declare the same flag (--run_dir, --seed, ...): the first definition
    wins instead of raising `DuplicateFlagError`.

    Args:
      flag_values: the `FlagValues` to define the flag in.
      kind: absl flag kind: "string", "integer", "float", "boolean", "list", "enum", ...
      name: flag name.
      default: default value.
      help_text: help string.
      *args: extra positional arguments of `DEFINE_<kind>` before the help text (the enum values
        of an "enum" flag).
    """
    if name not in flag_values:
        getattr(flags, f"DEFINE_{kind}")(name, default, *args, help_text, flag_values=flag_values)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def run_app(main, define_flags, argv=None) -> None:
    """Starts an app: quiet TensorFlow's C++ log (`tf_logs`), define its flags, `app.run(main)`.

    Args:
      main: the app's `main(argv)`.
      define_flags: the app's flag definer, called with no arguments (global `FLAGS`).
      argv: command line (default: `sys.argv`).
    """
    from tfglo.utils import tf_logs

    tf_logs.quiet_start()  # the app module has called it already; the environment stays set
    define_flags()
    app.run(main, argv=argv)
