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


@dataclasses.dataclass(frozen=True)
class Alike:
    """Another alternative: the same seed and rate as Outer's, its own depth.

    Attributes:
      seed: seeds everything.
      rate: learning rate at step 0.
      depth: its own setting.
    """

    seed: int = 0
    rate: float = 0.5
    depth: int = 7


def _set(**alike_kwargs):
    """A FlagSet of `_spec()` ("outer") and an Alike config ("alike")."""
    alike = configs.ConfigFlags("alike", {"alike": Alike}, **alike_kwargs)
    extra = (configs.Flag("which", "enum", "outer", "The alternative.", ("outer", "alike")),)
    return configs.FlagSet(
        "test", {"outer": _spec(), "alike": alike}, extra=extra, selector="which"
    )


class FlagSetTest(parameterized.TestCase):
    def test_shared_names_are_one_flag_and_each_alternative_builds_its_own(self):
        flag_set = _set()
        self.assertEqual(flag_set.names.count("seed"), 1)
        self.assertEqual(flag_set.flags["seed"].fields, ("Outer.seed", "Alike.seed"))
        self.assertEqual(flag_set.owners["seed"], ["outer", "alike"])
        self.assertEqual(flag_set.owners["depth"], ["alike"])
        values = _parse(flag_set, "--which=alike", "--seed=4", "--depth=2")
        self.assertIn("depth", flag_set.names_of("alike"))
        self.assertNotIn("depth", flag_set.names_of("outer"))
        self.assertNotIn("in_width", flag_set.values_of("alike", values))
        self.assertEqual(flag_set.values_of("alike", values)["which"], "alike")
        built = flag_set.alternatives["alike"].build(values)["alike"]
        self.assertEqual(built, Alike(seed=4, rate=0.5, depth=2))
        self.assertEqual(flag_set.alternatives["outer"].build(values)["outer"].seed, 4)

    @parameterized.named_parameters(
        ("default", {"seed": 1}, "default 0 vs 1"),
        ("kind", {"seed": 0.0}, "kind 'integer' vs 'float'"),
        ("help", {"doc": "seeds the data only."}, "help"),
    )
    def test_a_shared_name_with_another_meaning_is_an_error(self, change, message):
        doc = change.pop("doc", "seeds everything.")
        seed = change.get("seed", 0)
        cls = dataclasses.make_dataclass("Seeded", [("seed", type(seed), seed)])
        cls.__doc__ = f"Seeded.\n\n    Attributes:\n      seed: {doc}\n"
        with pytest.raises(ValueError, match=f"--seed means different things .*{message}"):
            configs.FlagSet(
                "test", {"outer": _spec(), "seeded": configs.ConfigFlags("s", {"s": cls})}
            )

    def test_a_common_field_or_a_contained_help_is_the_same_meaning(self):
        # Outer's and Other's seed share a flag within one alternative; Alike's seed says less.
        both = _spec(configs={"outer": Outer, "other": Other}, shared=("seed",))
        flag_set = configs.FlagSet(
            "test", {"both": both, "alike": configs.ConfigFlags("a", {"a": Alike})}
        )
        self.assertEqual(
            flag_set.flags["seed"].help,
            "Seeds everything. Seeds the data. (Outer.seed, Other.seed, Alike.seed)",
        )
        # The same field under another help prefix: one meaning.
        prefixed = _spec(app="p", help_prefix="p: ")
        configs.FlagSet("test", {"outer": _spec(), "p": prefixed})

    def test_shared_help_states_the_common_meaning(self):
        cls = dataclasses.make_dataclass("Seeded", [("seed", int, 0)])
        alternatives = {"outer": _spec(), "seeded": configs.ConfigFlags("s", {"s": cls})}
        flag_set = configs.FlagSet("test", alternatives, shared_help={"seed": "The seed."})
        self.assertEqual(flag_set.flags["seed"].help, "The seed. (Outer.seed, Seeded.seed)")
        with pytest.raises(ValueError, match="shared_help names no flag 'sed'"):
            configs.FlagSet("test", alternatives, shared_help={"seed": "x", "sed": "y"})

    def test_an_alternative_may_not_take_an_app_flag(self):
        extra = (configs.Flag("depth", "integer", 7, "The app's own."),)
        alike = configs.ConfigFlags("alike", {"alike": Alike})
        with pytest.raises(ValueError, match="--depth of alike clashes with the app's own flag"):
            configs.FlagSet("test", {"alike": alike}, extra=extra)

    def test_flags_of_another_alternative_are_refused_when_set(self):
        flag_set = _set()
        values = _parse(flag_set, "--which=outer", "--seed=3", "--in_width=5")
        flag_set.check_unused("outer", values)  # shared and own flags: fine
        flag_set.check_unused("alike", _parse(flag_set, "--which=alike", "--seed=3"))
        with pytest.raises(ValueError, match="^--in_width does not apply to --which=alike$"):
            flag_set.check_unused("alike", values)

    def test_flagfile_values_cover_every_alternative(self):
        flag_set = _set()
        self.assertEqual(flag_set.flagfile_values(), _parse(flag_set))
        with pytest.raises(ValueError, match="unknown test flag 'nope'"):
            flag_set.flagfile_values(None, nope=1)


class BuildConfigTest(parameterized.TestCase):
    def test_fields_without_flags_and_the_class_naming(self):
        @dataclasses.dataclass(frozen=True)
        class Named:
            """Named.

            Attributes:
              path: required, set by the app.
              decay: a decay.
            """

            path: str
            decay: float = 0.5
            FLAG_NAMES: typing.ClassVar = configs.FlagNames(names={"decay": "lr_decay"})

        spec = configs.ConfigFlags(
            "t", {"n": Named}, {Named: configs.FlagNames(skip=("path",))}, help_prefix="n: "
        )
        # An explicit naming wins over the class's FLAG_NAMES.
        self.assertEqual(spec.names, ["decay"])
        self.assertEqual(spec.flags["decay"].help, "n: A decay. (Named.decay)")
        self.assertEqual(spec.build_config("n", {"decay": 0.25}, path="p"), Named("p", 0.25))
        # Without one, the class's naming applies (a required field still needs a skip).
        with pytest.raises(TypeError, match="Named.path has no default"):
            configs.ConfigFlags("t", {"n": Named})
        Defaulted = dataclasses.make_dataclass(
            "Defaulted", [("path", str, "x")], bases=(Named,), frozen=True
        )
        spec = configs.ConfigFlags("t", {"d": Defaulted})
        self.assertEqual(sorted(spec.names), ["lr_decay", "path"])
        self.assertEqual(spec.build({"lr_decay": 0.125, "path": "q"})["d"].decay, 0.125)


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
