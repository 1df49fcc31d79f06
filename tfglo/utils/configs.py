"""Config dataclasses: JSON-able dicts and back, and the command-line flags derived from them.

Library code takes plain frozen dataclasses; only the apps read flags and build them. Every
config turns into a JSON-able dict with `to_dict` and back with `from_dict`, so a run directory can
store the resolved configuration and an export can rebuild the exact model.

A setting is declared once, as a dataclass field with a line in its class docstring's
"Attributes:" section. `ConfigFlags` turns the fields of an app's config classes into absl flags:

- name: the field's name after the class's prefix (`FlagNames.prefix`, e.g. "fg_" for the
  foreground field's settings), or a legacy name (`FlagNames.names`) where a flag was named
  before this rule and flagfiles use it;
- type and default: the field's (`bool` -> a boolean flag with `--no<name>`, `int`, `float`,
  `str`, `X | None` -> the same flag with default None, `typing.Literal[...]` or
  `FlagNames.choices` -> an enum flag that rejects other values, `tuple[...]` -> a comma-separated
  list flag; a nested config dataclass contributes its own fields);
- help: the field's line in the docstring, then the field it sets, e.g. "(ForegroundConfig.width)".

So adding a field adds its flag. Two fields map to one flag only where the app says so
(`shared`, e.g. the seed of TrainConfig and RayBatchConfig); any other clash is an error naming
both fields. Settings whose default comes from the data (`defaults_from`, e.g. the number of
latents from dataset.json) get flags that default to None; the app fills them in before `build`.

An app configured by one of several alternatives (the train app: one `ConfigFlags` per model
family) defines the flags of all of them with `FlagSet`: a flag name two alternatives share must
mean the same in both (kind, default, choices and help text); it is then one flag, else an error.
"""

import dataclasses
import inspect
import os
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from absl import flags

from tfglo.utils import app as app_utils

T = TypeVar("T")

# Flags defined here belong to the app that asks for them (its --helpshort lists them).
flags.disclaim_key_flags()


def to_dict(config: Any) -> dict[str, Any]:
    """Returns a JSON-able dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Builds a (nested) config dataclass from a dict, rejecting unknown keys.

    Args:
      cls: the dataclass type.
      values: as written by `to_dict`; missing keys take their defaults.

    Raises:
      ValueError: a key is not a field of `cls`.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        field_type = fields[name].type
        if dataclasses.is_dataclass(field_type) and isinstance(value, dict):
            value = from_dict(field_type, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


# --------------------------------------------------------------------------- docstrings

_ENTRY = re.compile(r"^([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def attribute_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the "Attributes:" section of `cls`'s docstring.

    Google style: one `name: text` entry per field (continuation lines indented deeper), or
    `a, b, c: text` for fields sharing a description. Base classes' entries are included (a
    subclass's entry wins).
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = klass.__dict__.get("__doc__")
        if text:
            docs.update(_parse_attributes(inspect.cleandoc(text)))
    return docs


def _parse_attributes(text: str) -> dict[str, str]:
    docs: dict[str, str] = {}
    names: list[str] = []
    parts: list[str] = []

    def flush():
        for name in names:
            docs[name] = " ".join(parts)

    inside, indent = False, None
    for line in text.splitlines():
        stripped = line.strip()
        if not inside:
            inside = stripped == "Attributes:"
            continue
        depth = len(line) - len(line.lstrip())
        if not stripped or (indent is not None and depth < indent):
            break  # a blank line or a dedent (the next section) ends the entries
        if indent is None:
            indent = depth
        if depth == indent:
            flush()
            match = _ENTRY.match(stripped)
            names = [n.strip() for n in match[1].split(",")] if match else []
            parts = [match[2]] if match else []
        else:
            parts.append(stripped)
    flush()
    return docs


# --------------------------------------------------------------------------------- flags

_PARSERS = {
    "string": flags.ArgumentParser,
    "integer": flags.IntegerParser,
    "float": flags.FloatParser,
    "boolean": flags.BooleanParser,
    "list": flags.ListParser,
}
_SCALARS = {bool: "boolean", int: "integer", float: "float", str: "string"}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One absl flag.

    Attributes:
      name: the flag's name (`--name=value`).
      kind: absl flag kind: "string", "integer", "float", "boolean", "list" or "enum".
      default: the flag's default (a list flag's is a list of strings, as absl parses it).
      help: help text.
      enum_values: the accepted values of an "enum" flag.
      element: a "list" flag's element type (its strings are converted to it for the field).
      length: a "list" flag's required number of values (None: any).
      fields: the config fields it sets, e.g. ("TrainConfig.seed", "RayBatchConfig.seed");
        empty for an app's own flags (--run_dir, --output, ...).
    """

    name: str
    kind: str
    default: Any
    help: str
    enum_values: tuple[str, ...] | None = None
    element: type | None = None
    length: int | None = None
    fields: tuple[str, ...] = ()

    def parser(self) -> flags.ArgumentParser:
        """The absl parser of this flag's text values."""
        if self.kind == "enum":
            return flags.EnumParser(list(self.enum_values))
        return _PARSERS[self.kind]()

    def define(self, flag_values: flags.FlagValues) -> None:
        """Defines the flag in `flag_values` unless it has one of that name (then it is shared)."""
        extra = (list(self.enum_values),) if self.kind == "enum" else ()
        app_utils.define_flag(flag_values, self.kind, self.name, self.default, self.help, *extra)

    def field_value(self, value):
        """A flag value as its field takes it (a list flag's strings -> a tuple of `element`)."""
        if self.kind != "list" or value is None:
            return value
        if self.length is not None and len(value) != self.length:
            raise ValueError(f"--{self.name} needs {self.length} values, got {list(value)}")
        try:
            return tuple(self.element(v) for v in value)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--{self.name}: {e}") from None


@dataclasses.dataclass(frozen=True)
class FlagNames:
    """How the fields of one config class are named as flags (see the module docstring).

    Attributes:
      prefix: put before every field name, e.g. "fg_" for ForegroundConfig.
      names: field -> flag name, overriding prefix + field (the flags' names before this rule).
      choices: field -> its accepted values (an enum flag), for str fields whose annotation does
        not say (`typing.Literal` does).
      skip: fields that get no flag (the app sets them another way, or they keep their default).
    """

    prefix: str = ""
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    choices: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    skip: Collection[str] = ()


class FlagTable:
    """An app's flags by name (`flags`), defined in, read from and parsed like absl's.

    The base of `ConfigFlags` and `FlagSet`: subclasses fill `app` (the app's name in messages)
    and `flags` (flag name -> `Flag`, in definition order).
    """

    app: str
    flags: dict[str, Flag]

    @property
    def names(self) -> list[str]:
        """Every flag name, in definition order."""
        return list(self.flags)

    def define(self, flag_values: flags.FlagValues = flags.FLAGS) -> None:
        """Defines every flag (a flag another app already defined in `flag_values` is shared)."""
        for flag in self.flags.values():
            flag.define(flag_values)

    def values(self, flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
        """Flag name -> parsed value (JSON-able), for every flag of this app."""
        return {name: flag_values[name].value for name in self.flags}

    def flagfile_values(self, flagfile: str | os.PathLike | None = None, **overrides) -> dict:
        """Flag values from a flagfile and overrides, without touching any `FlagValues`.

        The same values as `--flagfile=FILE --name=value ...` on the app's command line.

        Args:
          flagfile: a flagfile of `--name=value`, `--name` and `--noname` lines (`#` comments,
            nested `--flagfile=` lines allowed); None: the defaults.
          **overrides: flag name -> value (already typed, e.g. `num_steps=100`).

        Raises:
          ValueError: an unknown flag or an unparsable value (naming the file and line).
        """
        values = {name: flag.default for name, flag in self.flags.items()}
        if flagfile is not None:
            self._read_flagfile(str(flagfile), values)
        for name, value in overrides.items():
            if name not in values:
                raise ValueError(f"unknown {self.app} flag {name!r}")
            values[name] = value
        return values

    def _read_flagfile(self, path: str, values: dict) -> None:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{number}"
            if not line.startswith("--"):
                raise ValueError(f"{where}: expected --name=value, got {line!r}")
            name, has_value, text = line[2:].partition("=")
            if name == "flagfile":
                self._read_flagfile(text, values)  # relative to the working directory, as absl
                continue
            if not has_value and name not in values and name.startswith("no"):
                name, text = name[2:], "false"
            elif not has_value:
                text = "true"
            if name not in values:
                raise ValueError(f"{where}: unknown {self.app} flag --{name}")
            try:
                values[name] = self.flags[name].parser().parse(text)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: bad value for --{name}: {e}") from e


# A field -> flag binding tree per config: field name -> flag name, or a nested tree.
_Tree = dict[str, Any]


class ConfigFlags(FlagTable):
    """The flags of one app, derived from its config dataclasses (see the module docstring).

    Args:
      app: the app's name in messages, e.g. "tfglo.train".
      configs: key -> config class, e.g. {"model": ModelConfig, "train": TrainConfig}; `build`
        returns one instance per key.
      naming: config class -> `FlagNames`; a class not listed uses its `FLAG_NAMES` class
        attribute if it has one (the naming every app of that config shares), else the field
        names as they are.
      shared: flag names that several fields set together (any other clash raises).
      defaults_from: flag name -> where its value comes from when the flag is not given (e.g.
        "dataset.json's num_latents"); the flag defaults to None and the app fills it in.
      extra: the app's own flags that set no config field (--run_dir, --output, ...), first.
      help_prefix: put before the help of every derived flag (e.g. "transforms: " where an app
        has flags of several sources).

    Raises:
      TypeError: a field's type has no flag kind (list it in its class's `FlagNames.skip`).
      ValueError: two fields map to one flag name that is not in `shared`, or shared fields
        disagree on kind or default.
    """

    def __init__(
        self,
        app: str,
        configs: Mapping[str, type],
        naming: Mapping[type, FlagNames] | None = None,
        shared: Collection[str] = (),
        defaults_from: Mapping[str, str] | None = None,
        extra: Sequence[Flag] = (),
        help_prefix: str = "",
    ):
        self.app = app
        self._help_prefix = help_prefix
        self._naming = dict(naming or {})
        self._shared = set(shared)
        self._defaults_from = dict(defaults_from or {})
        self.flags: dict[str, Flag] = {flag.name: flag for flag in extra}
        self._trees = {key: self._bind(cls) for key, cls in configs.items()}
        self._configs = dict(configs)
        for name, flag in self.flags.items():
            if name in self._defaults_from:
                flag = dataclasses.replace(
                    flag, help=f"{flag.help} Default: {self._defaults_from[name]}."
                )
            if flag.fields:  # the help ends with the fields the flag sets
                flag = dataclasses.replace(flag, help=f"{flag.help} ({', '.join(flag.fields)})")
            self.flags[name] = flag
        for name in set(self._shared) | set(self._defaults_from):
            if name not in self.flags:
                raise ValueError(f"{app}: {name!r} names no flag derived from the configs")

    def _bind(self, cls: type) -> _Tree:
        naming = self._naming.get(cls) or getattr(cls, "FLAG_NAMES", None) or FlagNames()
        docs = attribute_docs(cls)
        hints = typing.get_type_hints(cls)
        tree: _Tree = {}
        for field in dataclasses.fields(cls):
            if field.name in naming.skip or not field.init:
                continue
            annotation = hints[field.name]
            if dataclasses.is_dataclass(annotation):
                tree[field.name] = self._bind(annotation)
                continue
            name = naming.names.get(field.name, naming.prefix + field.name)
            flag = _field_flag(cls, field, annotation, name, docs, naming.choices)
            if self._help_prefix:
                flag = dataclasses.replace(flag, help=self._help_prefix + flag.help)
            if name in self._defaults_from:
                flag = dataclasses.replace(flag, default=None)
            tree[field.name] = name
            self._add(flag)
        return tree

    def _add(self, flag: Flag) -> None:
        old = self.flags.get(flag.name)
        if old is None:
            self.flags[flag.name] = flag
            return
        where = f"{self.app}: --{flag.name} would set {', '.join(old.fields + flag.fields)}"
        if flag.name not in self._shared or not old.fields:
            raise ValueError(
                f"{where}; give one a prefix or a name (FlagNames), or list it in `shared`"
            )
        if (old.kind, old.default, old.enum_values) != (flag.kind, flag.default, flag.enum_values):
            raise ValueError(f"{where}, which disagree on the flag's kind or default")
        help_text = old.help if flag.help in old.help else f"{old.help} {flag.help}"
        self.flags[flag.name] = dataclasses.replace(
            old, fields=old.fields + flag.fields, help=help_text
        )

    def field_values(self, values: Mapping[str, Any], key: str) -> dict[str, Any]:
        """The keyword arguments of config `key` that the flag values set (nested as dicts).

        A flag of `defaults_from` still None is left out (its field keeps its default).
        """
        return self._kwargs(self._trees[key], values)

    def _kwargs(self, tree: _Tree, values: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = {}
        for field, node in tree.items():
            if isinstance(node, dict):
                kwargs[field] = self._kwargs(node, values)
            elif not (node in self._defaults_from and values[node] is None):
                kwargs[field] = self.flags[node].field_value(values[node])
        return kwargs

    def build(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Key -> config instance from flag values (`values`, `flagfile_values`).

        Raises:
          ValueError: a value the config rejects (its message names the setting).
        """
        return {key: self.build_config(key, values) for key in self._configs}

    def build_config(self, key: str, values: Mapping[str, Any], **fields):
        """Config `key` from flag values; `fields` set the fields that have no flag (skipped
        ones, e.g. a required path the app checks itself) or replace a flag's.

        Raises:
          ValueError: a value the config rejects (its message names the setting).
        """
        kwargs = self.field_values(values, key)
        kwargs.update(fields)
        return _construct(self._configs[key], kwargs)


class FlagSet(FlagTable):
    """The flags of an app configured by one of several alternatives, e.g. one `ConfigFlags` per
    model family: the flags of every alternative are defined, and the app builds the configs of
    the one chosen at run time (`names_of` / `values_of` select its flags).

    A name two alternatives share is one flag when it means the same in both: the same kind,
    default, choices, list element and length, and the same meaning: a config field in common
    (both families' `--seed` set `TrainConfig.seed`, one's also its data config's seed), or the
    same help text, or one's containing the other's (a subclass's field documented as its base
    class's). Otherwise it is an error naming both, unless the app states the common meaning in
    `shared_help` (e.g. the synthetic classes' `--train_views`, whose docstrings each speak of
    their own objects); kind, default and choices must agree all the same. The merged flag
    keeps the longer help text and lists every field it sets.

    Args:
      app: the app's name in messages, e.g. "tfglo.train".
      alternatives: key -> `ConfigFlags` (or another `FlagSet`), e.g. {"lolnerf": ...,
        "nerf_vae": ...}.
      extra: the app's own flags (first), common to every alternative; an alternative may not
        derive a flag of the same name.
      selector: the flag that picks the alternative (e.g. "model"), for `check_unused`'s
        messages.
      shared_help: flag name -> its help text where alternatives describe it differently.

    Raises:
      ValueError: a shared name with different meanings, or a clash with an `extra` flag.
    """

    def __init__(
        self,
        app: str,
        alternatives: Mapping[str, FlagTable],
        extra: Sequence[Flag] = (),
        selector: str | None = None,
        shared_help: Mapping[str, str] | None = None,
    ):
        self.app = app
        self.alternatives = dict(alternatives)
        self.selector = selector
        self._shared_help = dict(shared_help or {})
        self.flags = {flag.name: flag for flag in extra}
        self._own = tuple(self.flags)
        # flag name -> the alternatives that have it
        self.owners: dict[str, list[str]] = {}
        for key, spec in self.alternatives.items():
            for flag in spec.flags.values():
                self._add(key, flag)
        for name, text in self._shared_help.items():
            if name not in self.flags:
                raise ValueError(f"{app}: shared_help names no flag {name!r}")
            flag = self.flags[name]
            fields = f" ({', '.join(flag.fields)})" if flag.fields else ""
            self.flags[name] = dataclasses.replace(flag, help=text + fields)

    def _add(self, key: str, flag: Flag) -> None:
        old = self.flags.get(flag.name)
        if old is None:
            self.flags[flag.name] = flag
            self.owners[flag.name] = [key]
            return
        if flag.name in self._own:
            raise ValueError(f"{self.app}: --{flag.name} of {key} clashes with the app's own flag")
        differences = [
            f"{what} {a!r} vs {b!r}"
            for what, a, b in (
                ("kind", old.kind, flag.kind),
                ("default", old.default, flag.default),
                ("choices", old.enum_values, flag.enum_values),
                ("list element", old.element, flag.element),
                ("list length", old.length, flag.length),
            )
            if a != b
        ]
        if not (flag.name in self._shared_help or _same_meaning(old, flag)):
            differences.append(f"help {_meaning(old)!r} vs {_meaning(flag)!r}")
        if differences:
            raise ValueError(
                f"{self.app}: --{flag.name} means different things in {self.owners[flag.name]} "
                f"and {key!r} ({'; '.join(differences)}): give the settings one meaning (same "
                "type, default and docstring line) or different flag names (FlagNames)"
            )
        fields = old.fields + tuple(f for f in flag.fields if f not in old.fields)
        meaning = max(_meaning(old), _meaning(flag), key=len)
        help_text = f"{meaning} ({', '.join(fields)})" if fields else meaning
        self.flags[flag.name] = dataclasses.replace(old, fields=fields, help=help_text)
        self.owners[flag.name].append(key)

    def names_of(self, key: str) -> list[str]:
        """The app's own flags and those of alternative `key`, in definition order.

        Raises:
          KeyError: `key` is no alternative.
        """
        mine = set(self.alternatives[key].flags) | set(self._own)
        return [name for name in self.flags if name in mine]

    def values_of(self, key: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of `values` (every flag's) that alternative `key` and the app use."""
        return {name: values[name] for name in self.names_of(key)}

    def check_unused(self, key: str, values: Mapping[str, Any]) -> None:
        """Refuses flags of other alternatives set away from their defaults (a setting that
        would silently do nothing).

        Raises:
          ValueError: "--NAME does not apply to --SELECTOR=KEY" for the first such flag.
        """
        mine = set(self.names_of(key))
        for name, flag in self.flags.items():
            if name not in mine and name in values and values[name] != flag.default:
                where = f"--{self.selector}={key}" if self.selector else repr(key)
                raise ValueError(f"--{name} does not apply to {where}")


def _same_meaning(a: Flag, b: Flag) -> bool:
    """A field in common, or one help text (without the fields) within the other."""
    first, second = _meaning(a), _meaning(b)
    return bool(set(a.fields) & set(b.fields)) or first in second or second in first


def _meaning(flag: Flag) -> str:
    """A flag's help text without the fields it sets (the part that says what it means)."""
    return flag.help.removesuffix(f" ({', '.join(flag.fields)})") if flag.fields else flag.help


def _construct(cls: type, kwargs: dict[str, Any]):
    hints = typing.get_type_hints(cls)
    for name, value in kwargs.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _construct(hints[name], value)
    return cls(**kwargs)


def _field_flag(cls, field, annotation, name, docs, choices) -> Flag:
    """The flag of one scalar or tuple field."""
    where = f"{cls.__name__}.{field.name}"
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    if default is dataclasses.MISSING:
        raise TypeError(f"{where} has no default, so it cannot become a flag")
    base = _strip_optional(annotation)
    description = docs.get(field.name, "").strip()
    description = description[:1].upper() + description[1:] if description else "Undocumented."
    if not description.endswith("."):
        description += "."
    common = {"name": name, "help": description, "fields": (where,)}
    if field.name in choices or typing.get_origin(base) is typing.Literal:
        values = choices.get(field.name) or typing.get_args(base)
        return Flag(kind="enum", default=default, enum_values=tuple(values), **common)
    if base in _SCALARS:
        return Flag(kind=_SCALARS[base], default=default, **common)
    if typing.get_origin(base) is tuple:
        args = typing.get_args(base)
        variadic = len(args) == 2 and args[1] is Ellipsis
        elements = {args[0]} if variadic else set(args)
        if len(elements) == 1 and next(iter(elements)) in (int, float, str):
            return Flag(
                kind="list",
                default=None if default is None else [str(v) for v in default],
                element=next(iter(elements)),
                length=None if variadic else len(args),
                **common,
            )
    raise TypeError(
        f"{where}: a field of type {annotation} has no flag kind; add it to FlagNames.skip"
    )


def _strip_optional(annotation):
    """`X | None` / `Optional[X]` -> X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
