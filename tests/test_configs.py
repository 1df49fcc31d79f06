"""Tests for tfglo.utils.configs: dicts of configs, and flags derived from config dataclasses."""

import dataclasses
import pathlib
import tempfile
import typing

import pytest
from absl import flags
from absl.testing import parameterized

from tfglo.utils import configs


@dataclasses.dataclass(frozen=True)
class Inner:
    """A nested config.

    Attributes:
      width: units per layer.
      depth: number of
        layers (a continuation line).
    """

    width: int = 4
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class Outer:
    """A config of every supported kind.

    Attributes:
      inner: a nested config (its fields are flags of their own).
      rate: learning rate at step 0.
      name: a string
      enabled: turn it on.
      mode: one of "a" or "b".
      kind: one of "x" or "y" (listed by the app).
      size: optional size, pixels (None: the data's).
      color: RGB in [0, 1].
      ids: any number of ids.
      seed: seeds everything.

    Raises:
      nothing: this section is not attributes.
    """

    inner: Inner = dataclasses.field(default_factory=Inner)
    rate: float = 0.5
    name: str = "n"
    enabled: bool = True
    mode: typing.Literal["a", "b"] = "a"
    kind: str = "x"
    size: int | None = None
    color: tuple[float, float, float] = (1.0, 0.5, 0.0)
    ids: tuple[int, ...] = ()
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Other:
    """Another section.

    Attributes:
      seed: seeds the data.
      width: a width that is not Inner's.
    """

    seed: int = 0
    width: int = 9


def _spec(**kwargs):
    args = {
        "app": "test",
        "configs": {"outer": Outer},
        "naming": {
            Inner: configs.FlagNames(prefix="in_", names={"depth": "layers"}),
            Outer: configs.FlagNames(choices={"kind": ("x", "y")}),
        },
    }
    args.update(kwargs)
    return configs.ConfigFlags(**args)


def _parse(spec, *argv):
    flag_values = flags.FlagValues()
    spec.define(flag_values)
    flag_values(["test", *argv])
    return spec.values(flag_values)


class AttributeDocsTest(parameterized.TestCase):
    @parameterized.parameters(
        ("width", "units per layer."),
        ("depth", "number of layers (a continuation line)."),
    )
    def test_entries_and_continuations(self, name, text):
        self.assertEqual(configs.attribute_docs(Inner)[name], text)

    def test_other_sections_and_shared_entries(self):
        @dataclasses.dataclass
        class Shared:
            """Shared entries.

            Attributes:
              beta1, beta2: Adam's decay rates.
              eps (float): epsilon.

            Raises:
              ValueError: never.
            """

            beta1: float = 0.9
            beta2: float = 0.99
            eps: float = 1e-7

        docs = configs.attribute_docs(Shared)
        self.assertEqual(docs, {"beta1": "Adam's decay rates.", "beta2": "Adam's decay rates.",
                                "eps": "epsilon."})  # fmt: skip
        self.assertNotIn("nothing", configs.attribute_docs(Outer))


class DerivedFlagsTest(parameterized.TestCase):
    @parameterized.parameters(
        ("in_width", "integer", 4),
        ("layers", "integer", 2),  # a legacy name
        ("rate", "float", 0.5),
        ("name", "string", "n"),
        ("enabled", "boolean", True),
        ("mode", "enum", "a"),
        ("kind", "enum", "x"),
        ("size", "integer", None),
        ("color", "list", ["1.0", "0.5", "0.0"]),
        ("ids", "list", []),
    )
    def test_kind_and_default_come_from_the_field(self, name, kind, default):
        flag = _spec().flags[name]
        self.assertEqual((flag.kind, flag.default), (kind, default))

    def test_help_is_the_docstring_line_and_the_field(self):
        spec = _spec()
        self.assertEqual(spec.flags["rate"].help, "Learning rate at step 0. (Outer.rate)")
        self.assertEqual(spec.flags["name"].help, "A string. (Outer.name)")
        self.assertEqual(
            spec.flags["layers"].help, "Number of layers (a continuation line). (Inner.depth)"
        )

    def test_parse_and_build(self):
        spec = _spec()
        values = _parse(
            spec, "--in_width=7", "--layers=3", "--noenabled", "--mode=b", "--color=0,0,1"
        )
        built = spec.build(values)["outer"]
        self.assertEqual(built.inner, Inner(width=7, depth=3))
        self.assertEqual((built.enabled, built.mode, built.kind), (False, "b", "x"))
        self.assertEqual(built.color, (0.0, 0.0, 1.0))
        self.assertEqual(built.ids, ())
        self.assertEqual(spec.build(_parse(spec))["outer"], Outer())

    @parameterized.parameters(
        ("--mode=c",),  # Literal
        ("--kind=z",),  # FlagNames.choices
        ("--in_width=wide",),
        ("--size=1.5",),
    )
    def test_bad_values_are_rejected_by_the_parser(self, arg):
        with pytest.raises(flags.IllegalFlagValueError):
            _parse(_spec(), arg)

    @parameterized.parameters(
        ("--color=1,2", "--color needs 3 values, got"),
        ("--color=1,x,2", "--color: could not convert"),
        ("--ids=1,b", "--ids: invalid literal"),
    )
    def test_bad_lists_are_rejected_when_built(self, arg, message):
        spec = _spec()
        values = _parse(spec, arg)
        with pytest.raises(ValueError, match=message):
            spec.build(values)

    def test_a_new_field_gets_its_flag(self):
        @dataclasses.dataclass(frozen=True)
        class Grown(Outer):
            """Outer with one more setting.

            Attributes:
              momentum: heavy-ball momentum of the optimiser.
            """

            momentum: float = 0.9

        spec = _spec(configs={"outer": Grown})
        flag = spec.flags["momentum"]
        self.assertEqual((flag.kind, flag.default), ("float", 0.9))
        self.assertEqual(flag.help, "Heavy-ball momentum of the optimiser. (Grown.momentum)")
        self.assertEqual(spec.flags["rate"].help, "Learning rate at step 0. (Grown.rate)")
        self.assertEqual(spec.build(_parse(spec, "--momentum=0.5"))["outer"].momentum, 0.5)
        self.assertEqual(set(spec.names) - set(_spec().names), {"momentum"})

    def test_an_undocumented_field_says_so(self):
        @dataclasses.dataclass
        class Bare:
            count: int = 1

        spec = configs.ConfigFlags("test", {"bare": Bare})
        self.assertEqual(spec.flags["count"].help, "Undocumented. (Bare.count)")

    def test_shared_flags_set_every_field(self):
        spec = _spec(configs={"outer": Outer, "other": Other}, shared=("seed",))
        self.assertEqual(
            spec.flags["seed"].help,
            "Seeds everything. Seeds the data. (Outer.seed, Other.seed)",
        )
        built = spec.build(_parse(spec, "--seed=5"))
        self.assertEqual((built["outer"].seed, built["other"].seed), (5, 5))

    def test_undeclared_clashes_are_errors(self):
        with pytest.raises(ValueError, match=r"--seed would set Outer.seed, Other.seed"):
            _spec(configs={"outer": Outer, "other": Other})
        # Other.width has no prefix, Inner.width has "in_": no clash.
        self.assertIn(
            "width", _spec(configs={"outer": Outer, "other": Other}, shared=["seed"]).flags
        )
        extra = (configs.Flag("rate", "float", 1.0, "An app flag."),)
        with pytest.raises(ValueError, match="--rate would set Outer.rate"):
            _spec(extra=extra)

    def test_shared_fields_must_agree(self):
        @dataclasses.dataclass
        class Seeded:
            seed: int = 3

        with pytest.raises(ValueError, match="disagree on the flag's kind or default"):
            _spec(configs={"outer": Outer, "seeded": Seeded}, shared=("seed",))

    def test_defaults_from_the_data(self):
        spec = _spec(defaults_from={"rate": "the dataset's"})
        self.assertIsNone(spec.flags["rate"].default)
        self.assertEqual(
            spec.flags["rate"].help, "Learning rate at step 0. Default: the dataset's. (Outer.rate)"
        )
        values = _parse(spec)
        self.assertNotIn("rate", spec.field_values(values, "outer"))
        self.assertEqual(spec.build(dict(values, rate=0.25))["outer"].rate, 0.25)
        with pytest.raises(ValueError, match="'nope' names no flag"):
            _spec(defaults_from={"nope": "x"})

    @parameterized.parameters(
        (dict[str, int], {}, "no flag kind"),
        (typing.Any, None, "no flag kind"),
        (tuple[int, str], (1, "a"), "no flag kind"),
    )
    def test_unsupported_types_are_errors_unless_skipped(self, annotation, default, message):
        cls = dataclasses.make_dataclass(
            "Odd", [("odd", annotation, dataclasses.field(default_factory=lambda: default))]
        )
        with pytest.raises(TypeError, match=f"Odd.odd: .*{message}"):
            configs.ConfigFlags("test", {"odd": cls})
        spec = configs.ConfigFlags("test", {"odd": cls}, {cls: configs.FlagNames(skip=["odd"])})
        self.assertEqual(spec.names, [])

    def test_flags_another_app_defined_are_shared(self):
        flag_values = flags.FlagValues()
        flags.DEFINE_integer("seed", 11, "Defined first elsewhere.", flag_values=flag_values)
        spec = _spec()
        spec.define(flag_values)
        flag_values(["test", "--seed=2"])
        self.assertEqual(spec.build(spec.values(flag_values))["outer"].seed, 2)

    def test_flags_belong_to_the_module_that_defines_them(self):
        flag_values = flags.FlagValues()
        _spec().define(flag_values)
        names = {f.name for f in flag_values.get_key_flags_for_module(__name__)}
        self.assertIn("in_width", names)
        self.assertEqual(flag_values.get_key_flags_for_module(configs.__name__), [])


class FlagfileValuesTest(parameterized.TestCase):
    def _file(self, name, text):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        path = pathlib.Path(tmp.name) / name
        path.write_text(text)
        return str(path)

    def test_matches_absl(self):
        spec = _spec()
        inner = self._file("inner.cfg", "--rate=0.125\n")
        outer = self._file(
            "outer.cfg",
            f"# comment\n--flagfile={inner}\n--noenabled\n--color=0,1,0\n--in_width=9\n",
        )
        flag_values = flags.FlagValues()
        spec.define(flag_values)
        flag_values(["test", f"--flagfile={outer}"])
        values = spec.flagfile_values(outer)
        self.assertEqual(values, spec.values(flag_values))
        self.assertEqual((values["rate"], values["enabled"], values["in_width"]), (0.125, False, 9))
        self.assertEqual(spec.flagfile_values(outer, rate=1.0)["rate"], 1.0)
        self.assertEqual(spec.flagfile_values(), spec.values(_fresh(spec)))

    @parameterized.parameters(
        ("--in_width=wide\n", r"x.cfg:1: bad value for --in_width"),
        ("\n--wdth=3\n", r"x.cfg:2: unknown test flag --wdth"),
        ("rate=3\n", r"x.cfg:1: expected --name=value"),
    )
    def test_bad_lines(self, text, message):
        path = self._file("x.cfg", text)
        with pytest.raises(ValueError, match=message):
            _spec().flagfile_values(path)
        with pytest.raises(ValueError, match="unknown test flag 'steps'"):
            _spec().flagfile_values(None, steps=3)


def _fresh(spec):
    flag_values = flags.FlagValues()
    spec.define(flag_values)
    flag_values(["test"])
    return flag_values


class DictTest(parameterized.TestCase):
    def test_round_trip_and_unknown_keys(self):
        config = Outer(inner=Inner(width=3), color=(0.0, 0.0, 0.0), ids=(1, 2))
        values = configs.to_dict(config)
        self.assertEqual(values["inner"], {"width": 3, "depth": 2})
        self.assertEqual(configs.from_dict(Outer, values), config)
        with pytest.raises(ValueError, match="unknown Outer keys: bogus"):
            configs.from_dict(Outer, {"bogus": 1})
