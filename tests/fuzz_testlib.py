"""Hypothesis strategies and settings for the hostile-input tests (tests/test_fuzz_inputs.py).

- `FUZZ`: deterministic settings (derandomized, no example database written into the repo, no
  deadline: the machines here are shared and timing varies); `examples(n)` sizes a test, and
  `TFGLO_FUZZ_SCALE` multiplies every size (the `slow` variants use `SLOW_SCALE` more).
- `mutated_bytes(base)`: a real file's bytes after 1-4 mutations (bit flips, overwrites,
  insertions, deletions, duplicated chunks, truncation, header fields set to 0 / 0xFF..).
- `hostile_json()`: JSON values a parser must survive (wrong types, NaN / inf, huge and
  negative numbers, 10**400, empty and nested containers, path-like strings).
- `mutated_document(doc)`: a valid JSON document after 1-3 structural mutations (a value
  replaced by a hostile one, a key deleted or added, a list emptied, grown or wrapped).
- `CaseCounter`: counts the cases each parser ran (the note reports them).
"""

import copy
import json
import os
import threading

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
SCALE = float(os.environ.get("TFGLO_FUZZ_SCALE", "1"))
SLOW_SCALE = 10.0


def examples(n: int, slow: bool = False) -> settings:
    """`FUZZ` with `n` examples (times `TFGLO_FUZZ_SCALE`, and `SLOW_SCALE` for slow tests)."""
    scale = SCALE * (SLOW_SCALE if slow else 1.0)
    return settings(FUZZ, max_examples=max(1, int(round(n * scale))))


class CaseCounter:
    """Thread-safe counts of cases per parser and of their outcomes."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = {}

    def add(self, parser: str, outcome: str) -> None:
        with self._lock:
            per = self.counts.setdefault(parser, {})
            per[outcome] = per.get(outcome, 0) + 1

    def total(self, parser: str) -> int:
        return sum(self.counts.get(parser, {}).values())


COUNTER = CaseCounter()


# Bytes -------------------------------------------------------------------------------------

_BYTE_VALUES = st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE])


@st.composite
def _mutation(draw, length: int):
    kind = draw(
        st.sampled_from(
            ["flip", "overwrite", "insert", "delete", "duplicate", "truncate", "header", "magic"]
        )
    )
    # Headers hold the sizes, modes and chunk lengths: mutate them more often.
    near_start = draw(st.booleans())
    limit = min(length, 96) if near_start else length
    position = draw(st.integers(0, max(0, limit - 1)))
    if kind == "flip":
        return kind, position, draw(st.integers(0, 7))
    if kind == "overwrite":
        return kind, position, draw(st.binary(min_size=1, max_size=16))
    if kind == "insert":
        return kind, position, draw(st.binary(min_size=1, max_size=64))
    if kind == "delete":
        return kind, position, draw(st.integers(1, 256))
    if kind == "duplicate":
        return kind, position, draw(st.integers(1, 512))
    if kind == "truncate":
        return kind, draw(st.integers(0, max(0, length - 1))), None
    if kind == "header":
        # A 1, 2 or 4-byte field set to an extreme value (sizes of 0 or 65535, huge lengths).
        return kind, position, bytes([draw(_BYTE_VALUES)]) * draw(st.sampled_from([1, 2, 4]))
    return (
        kind,
        0,
        draw(
            st.sampled_from(
                [
                    b"\x89PNG\r\n\x1a\n",
                    b"\xff\xd8\xff\xe0",
                    b"GIF89a",
                    b"II*\x00",
                    b"BM",
                    b"RIFF\x00\x00\x00\x00WEBP",
                    b"\x00\x00\x00\x18ftypheic",
                    b"",
                ]
            )
        ),
    )


def apply_mutation(data: bytes, mutation) -> bytes:
    kind, position, value = mutation
    data = bytearray(data)
    if not data and kind not in ("insert", "magic"):
        return bytes(data)
    position = min(position, max(0, len(data) - 1))
    if kind == "flip":
        data[position] ^= 1 << value
    elif kind in ("overwrite", "header"):
        data[position : position + len(value)] = value
    elif kind == "insert":
        data[position:position] = value
    elif kind == "delete":
        del data[position : position + value]
    elif kind == "duplicate":
        data[position:position] = data[position : position + value]
    elif kind == "truncate":
        del data[position:]
    elif kind == "magic":
        data[: len(value)] = value
    return bytes(data)


@st.composite
def mutated_bytes(draw, base: bytes, max_mutations: int = 4) -> bytes:
    """`base` after 1..max_mutations random mutations (see the module docstring)."""
    data = base
    for _ in range(draw(st.integers(1, max_mutations))):
        data = apply_mutation(data, draw(_mutation(len(data))))
    return data


# JSON --------------------------------------------------------------------------------------

_HOSTILE_NUMBERS = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2**31,
            2**63,
            -(2**63) - 1,
            10**400,
            -(10**400),
            0.0,
            -0.0,
            1e-320,
            1e308,
            -1e308,
            float("nan"),
            float("inf"),
            float("-inf"),
            0.5,
            3.0,
        ]
    ),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
)
_HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "1e999",
            "../outside.png",
            "/etc/passwd",
            "img/../../x.png",
            "img/a.png\x00.jpg",
            "C:\\x.png",
            "\u202e.png",
            "a" * 300,
        ]
    ),
    st.text(max_size=12),
)


def hostile_json(max_leaves: int = 6):
    """JSON-able values of every type, with the numbers and strings parsers trip on."""
    leaves = st.one_of(st.none(), st.booleans(), _HOSTILE_NUMBERS, _HOSTILE_TEXT)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(_HOSTILE_TEXT, children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def _paths(value, prefix=()):
    """Every path (tuple of keys / indices) into a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _get(value, path):
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_document(draw, base, max_mutations: int = 3):
    """`base` (not modified) after 1..max_mutations structural mutations."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        kind = draw(
            st.sampled_from(["replace", "replace", "delete", "add_key", "empty", "grow", "wrap"])
        )
        if kind == "replace" or (kind in ("delete",) and not path):
            new = draw(hostile_json())
            if not path:
                doc = new
            else:
                _get(doc, path[:-1])[path[-1]] = new
            continue
        target = _get(doc, path)
        if kind == "delete":
            del _get(doc, path[:-1])[path[-1]]
        elif kind == "add_key" and isinstance(target, dict):
            target[draw(_HOSTILE_TEXT)] = draw(hostile_json())
        elif kind == "empty" and isinstance(target, list | dict):
            target.clear()
        elif kind == "grow" and isinstance(target, list) and target:
            target.extend(copy.deepcopy(target[: draw(st.integers(1, len(target)))]))
        elif kind == "wrap" and path:
            _get(doc, path[:-1])[path[-1]] = [target]
    return doc


def dumps(doc) -> str:
    """JSON text of a document; NaN / Infinity become the (non-standard) literals Python reads."""
    return json.dumps(doc, allow_nan=True)
