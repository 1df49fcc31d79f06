"""The apps: their flags, derived from the config dataclasses, rebuild the configs the hand-written
flags built, and every app module is thin (flag handling and a `main`).

tests/data/flag_configs/ holds snapshots made with the hand-written flag definitions and
flag -> config mappings that derived flags replaced: per flagfile in flags/ (and a few command
lines) the flag values and the configs `tfglo.train` built from them against dataset.json there,
the `EvaluateConfig`s of two `tfglo.evaluate` command lines, and each app's flag table (name,
type, default, enum values). A config field added since takes its default in every snapshot (no
flagfile sets it), which is what the comparison allows for.
"""

import ast
import json
import pathlib

import pytest
import serving_testlib
from absl import flags
from absl.testing import flagsaver, parameterized

from tfglo import evaluate, lift, render
from tfglo import train as train_app
from tfglo.utils import configs

ROOT = pathlib.Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "data" / "flag_configs"
FLAGFILES = sorted(p.stem for p in (ROOT / "flags").glob("*.cfg"))
TRAIN_CASES = sorted(p.stem for p in SNAPSHOTS.glob("train_*.json"))
EVALUATE_CASES = sorted(p.stem for p in SNAPSHOTS.glob("evaluate_*.json"))


def _snapshot(name: str) -> dict:
    return json.loads((SNAPSHOTS / f"{name}.json").read_text())


def _assert_matches(got, want, default, where: str) -> None:
    """`got` equals the snapshot `want`; keys the snapshot lacks (fields added since) hold their
    `default` (the same structure as `got`, from a default-constructed config)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not a dict"
        missing = sorted(set(want) - set(got))
        assert not missing, f"{where}: no longer has {missing}"
        for key in got:
            if key in want:
                _assert_matches(got[key], want[key], default[key], f"{where}.{key}")
            else:
                assert got[key] == default[key], f"{where}.{key}: new, yet not its default"
    else:
        assert got == want, f"{where}: {got!r} != snapshot {want!r}"


def _json(value):
    return json.loads(json.dumps(value))


class TrainFlagsTest(parameterized.TestCase):
    def test_every_flagfile_has_a_snapshot(self):
        missing = [f for f in FLAGFILES if f"train_{f}" not in TRAIN_CASES]
        assert not missing, (
            f"flags/{missing[0]}.cfg has no snapshot: check its configs by hand, then add "
            f"tests/data/flag_configs/train_{missing[0]}.json"
        )

    @parameterized.named_parameters((case, case) for case in TRAIN_CASES)
    def test_flags_rebuild_the_snapshot(self, case):
        snapshot = _snapshot(case)
        with flagsaver.flagsaver():
            train_app.FLAGS(["train", *snapshot["argv"]])
            values = train_app.flag_values()
            train_app.FLAGS.unparse_flags()
        flagfile = [a.split("=", 1)[1] for a in snapshot["argv"] if a.startswith("--flagfile=")]
        if flagfile and len(snapshot["argv"]) == 1:  # the in-process reader agrees with absl's
            self.assertEqual(train_app.flagfile_values(ROOT / flagfile[0]), values)
        defaults = {name: flag.default for name, flag in train_app.FLAG_SPEC.flags.items()}
        _assert_matches(_json(values), snapshot["flags"], defaults, f"{case} flags")
        family = train_app.FAMILIES[values["model"]]
        got = family.configs_from_flags(values, snapshot["metadata"])
        assert sorted(got) == sorted(snapshot["configs"]), case
        for key, config in got.items():
            default = configs.to_dict(type(config)())
            _assert_matches(
                _json(configs.to_dict(config)), snapshot["configs"][key], _json(default), key
            )


class EvaluateFlagsTest(parameterized.TestCase):
    @parameterized.named_parameters((case, case) for case in EVALUATE_CASES)
    def test_flags_rebuild_the_snapshot(self, case):
        snapshot = _snapshot(case)
        flag_values = flags.FlagValues()
        evaluate.define_flags(flag_values)
        flag_values(["evaluate", *snapshot["argv"]])
        config = evaluate.config_from_flags(flag_values)
        default = _json(configs.to_dict(type(config)()))
        _assert_matches(
            _json(configs.to_dict(config)), snapshot["configs"]["evaluate"], default, case
        )


def _flag_table(flag_values: flags.FlagValues, names) -> dict:
    table = {}
    for name in names:
        flag = flag_values[name]
        entry = {"type": flag.flag_type(), "default": flag.default}
        if hasattr(flag.parser, "enum_values"):
            entry["enum_values"] = list(flag.parser.enum_values)
        table[name] = entry
    return table


def _app_flags(app: str) -> tuple[flags.FlagValues, configs.ConfigFlags]:
    flag_values = flags.FlagValues()
    if app == "export_client":
        spec = serving_testlib.load_client().FLAG_SPEC
    else:
        apps = {"train": train_app, "evaluate": evaluate, "render": render, "lift": lift}
        spec = apps[app].FLAG_SPEC
    spec.define(flag_values)
    return flag_values, spec


class AppFlagTablesTest(parameterized.TestCase):
    @parameterized.parameters("train", "evaluate", "render", "export_client")
    def test_every_flag_keeps_its_name_type_and_default(self, app):
        want = _snapshot("app_flags")[app]
        flag_values, spec = _app_flags(app)
        missing = sorted(set(want) - set(spec.names))
        assert not missing, f"{app} lost flags {missing}"
        got = _flag_table(flag_values, want)
        for name, entry in want.items():
            flag = spec.flags[name]
            if flag.kind == "list" and flag.element is not None:
                # ["-35", "35"] and ["-35.0", "35.0"] are the same default.
                got[name]["default"] = flag.field_value(got[name]["default"])
                entry = dict(entry, default=flag.field_value(entry["default"]))
            self.assertEqual(got[name], entry, f"{app} --{name}")

    @parameterized.parameters("train", "evaluate", "render", "lift", "export_client")
    def test_derived_flags_have_the_docstring_help(self, app):
        _, spec = _app_flags(app)
        undocumented = [f.name for f in spec.flags.values() if f.help.startswith("Undocumented")]
        assert not undocumented, f"{app}: document {undocumented} in their config's docstring"
        for flag in spec.flags.values():
            self.assertTrue(flag.help.strip(), flag.name)


# ----------------------------------------------------------------------------- thin apps

APPS = ("prepare", "train", "evaluate", "render", "export", "bench", "demo", "lift")
APP_FUNCTIONS = {"main", "run", "define_flags"}
# A helper beside them (flag values -> a config, a signal handler) is this many lines at most.
MAX_HELPER_LINES = 15
# Apps not thin yet, and why; an entry goes when its library code has moved out.
NOT_THIN_YET: dict[str, str] = {}
# Single library functions still in an otherwise thin app.
LEFTOVER_FUNCTIONS: dict[tuple[str, str], str] = {}


def app_violations(source: str, app: str = "app") -> list[str]:
    """What in an app module's source is more than flag handling and a main."""
    problems = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            problems.append(f"class {node.name} (library code: move it out of the app)")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring
            lines = node.end_lineno - body[0].lineno + 1 if body else 0
            allowed = node.name in APP_FUNCTIONS or (app, node.name) in LEFTOVER_FUNCTIONS
            if not allowed and lines > MAX_HELPER_LINES:
                problems.append(f"def {node.name} ({lines} lines > {MAX_HELPER_LINES})")
        for sub in ast.walk(node):
            modules = []
            if isinstance(sub, ast.ImportFrom) and sub.module:
                modules = [f"{sub.module}.{a.name}" for a in sub.names] + [sub.module]
            elif isinstance(sub, ast.Import):
                modules = [a.name for a in sub.names]
            apps = sorted({m.split(".")[1] for m in modules if _is_app(m)})
            problems += [f"imports the {other} app" for other in apps]
    return problems


def _is_app(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 2 and parts[0] == "tfglo" and parts[1] in APPS


@parameterized.parameters(
    ("def main(argv):\n" + "    x = 1\n" * 40, []),
    ("FLAGS = 1\nSPEC = dict(a=1)\nSPEC.update(b=2)\ndef run():\n    pass\n", []),
    ("def helper(f):\n" + "    x = 1\n" * 15, []),
    ("def helper(f):\n" + "    x = 1\n" * 16, ["def helper (16 lines > 15)"]),
    ("class Summary:\n    pass\n", ["class Summary (library code: move it out of the app)"]),
    ("from tfglo import render\n", ["imports the render app"]),
    ("def main(argv):\n    import tfglo.train\n", ["imports the train app"]),
    ("from tfglo.engine import views\nfrom tfglo import utils\n", []),
)
def test_app_checker(source, problems):
    assert app_violations(source) == problems


@pytest.mark.parametrize("app", APPS)
def test_apps_are_flags_and_a_main(app):
    if app in NOT_THIN_YET:
        pytest.skip(f"tfglo/{app}.py is not thin yet: {NOT_THIN_YET[app]}")
    problems = app_violations((ROOT / "tfglo" / f"{app}.py").read_text(), app)
    assert not problems, f"tfglo/{app}.py: {problems}"


def quiet_start_violations(source: str) -> list[str]:
    """An app that imports library code (and so TensorFlow) must quiet TensorFlow's start-up
    lines first: `from tfglo.utils import tf_logs` and `tf_logs.quiet_start()` before any other
    import (`tfglo.utils.tf_logs`; the environment must be set before TensorFlow loads)."""
    body = [n for n in ast.parse(source).body if not _is_docstring(n)]
    imports = [n for n in ast.walk(ast.Module(body=body, type_ignores=[])) if _imports(n)]
    if not any(m.startswith("tfglo.") and m != "tfglo.utils.tf_logs" for n in imports
               for m in _imports(n)):  # fmt: skip
        return []  # e.g. the demo: it runs the other apps in their own processes
    # The call must come before the first import of library code or TensorFlow (plain Python
    # before it, e.g. the train app's signal handlers, is fine).
    statements = [ast.unparse(n) for n in body]
    if "tf_logs.quiet_start()" not in statements:
        return ["never calls tf_logs.quiet_start()"]
    quiet = statements.index("tf_logs.quiet_start()")
    for index, node in enumerate(body):
        heavy = [
            m
            for n in ast.walk(node)
            for m in _imports(n)
            if m.split(".")[0] in ("tensorflow", "keras", "absl")
            or (m.startswith("tfglo.") and m != "tfglo.utils.tf_logs")
        ]
        if heavy and index < quiet:
            return [f"imports {heavy[0]} before the tf_logs.quiet_start() call"]
    return []


def _is_docstring(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


def _imports(node) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.module:
        return [f"{node.module}.{a.name}" for a in node.names]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return []


@parameterized.parameters(
    ('"""Doc."""\nimport os\n', []),
    ('"""Doc."""\nfrom tfglo.utils import tf_logs\n\ntf_logs.quiet_start()\n'
     "from tfglo.data import records\n", []),
    ("from tfglo.data import records\n",
     ["starts with ['from tfglo.data import records'], not the tf_logs.quiet_start() call"]),
    ("import os\nfrom tfglo.utils import tf_logs\ntf_logs.quiet_start()\nimport tfglo.train\n",
     ["starts with ['import os', 'from tfglo.utils import tf_logs'], not the "
      "tf_logs.quiet_start() call"]),
)  # fmt: skip
def test_quiet_start_checker(source, problems):
    assert quiet_start_violations(source) == problems


@pytest.mark.parametrize("app", APPS)
def test_apps_quiet_tensorflow_before_importing_it(app):
    problems = quiet_start_violations((ROOT / "tfglo" / f"{app}.py").read_text())
    assert not problems, f"tfglo/{app}.py: {problems}"


def test_the_allowances_are_still_needed():
    for app in NOT_THIN_YET:
        assert app_violations((ROOT / "tfglo" / f"{app}.py").read_text(), app), (
            f"tfglo/{app}.py is thin now: remove it from NOT_THIN_YET"
        )
    for app, name in LEFTOVER_FUNCTIONS:
        tree = ast.parse((ROOT / "tfglo" / f"{app}.py").read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in names, f"{app}.{name} moved: remove it from LEFTOVER_FUNCTIONS"
