"""The generic config reader of src/config.py: each annotated type, `auto` and null, missing keys,
nested and conditional groups, and the per-dataclass check, on small dataclasses and on the real tree."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import load
from src.config import ConfigError, key, read_group


@dataclass(frozen=True)
class Inner:
    size: int = key(lo=1)


@dataclass(frozen=True)
class Schema:
    count: int = key(lo=0, hi=10)
    rate: float = key(lo=0.0, hi=1.0, hi_open=True)
    temperature: float = key(lo=0.0, lo_open=True)
    mode: str = key(choices=("a", "b"))
    flag: bool
    folder: Path
    widths: tuple[int, ...] = key(lo=1)
    parts: tuple[str, ...] = key(choices=("x", "y"))
    names: tuple[str, ...]
    limit: int | None = key(lo=1)
    batch: int | None = key(lo=1, auto=True)
    compile: bool | None = key(auto=True)
    kind: str
    inner: Inner = key("Inner-Group")
    deep: Inner = key("outer.inner")
    extra: Inner | None = key(only_if=("kind", "special"))

    def check(self, path: str) -> None:
        if self.count > self.inner.size:
            raise ConfigError(f"config key '{path}.count' must be <= {path}.Inner-Group.size")


GOOD = dict(count=3, rate=0.5, temperature=0.1, mode="a", flag=True, folder="out", widths=[4, 8], parts=["x"],
            names=["n"], limit=None, batch="auto", compile="auto", kind="plain", **{"Inner-Group": {"size": 5}},
            outer={"inner": {"size": 2}})


def read(seen: set[str] | None = None, **changes):
    node = OmegaConf.create({**GOOD, **changes})
    return read_group(Schema, node, "grp", set() if seen is None else seen)


def test_good_values_are_read_as_their_types():
    seen: set[str] = set()
    got = read(seen)
    assert (got.count, got.rate, got.mode, got.flag, got.folder) == (3, 0.5, "a", True, Path("out"))
    assert (got.widths, got.parts, got.names) == ((4, 8), ("x",), ("n",))
    assert (got.limit, got.batch, got.compile) == (None, None, None)
    assert got.inner == Inner(5) and got.deep == Inner(2) and got.extra is None
    assert read(temperature=2).temperature == 2.0 and isinstance(read(temperature=2).temperature, float)
    assert {"grp.count", "grp.Inner-Group.size", "grp.outer.inner.size"} <= seen and "grp.extra" not in seen


@pytest.mark.parametrize("changes, message", [
    ({"count": "3"}, "'grp.count' must be an integer in [0, 10], got '3'"),
    ({"count": 11}, "'grp.count' must be an integer in [0, 10], got 11"),
    ({"count": True}, "'grp.count' must be an integer in [0, 10], got True"),
    ({"count": 2.0}, "'grp.count' must be an integer in [0, 10], got 2.0"),
    ({"rate": 1.0}, "'grp.rate' must be a number in [0.0, 1.0), got 1.0"),
    ({"rate": -0.1}, "'grp.rate' must be a number in [0.0, 1.0), got -0.1"),
    ({"temperature": 0}, "'grp.temperature' must be a number > 0.0, got 0"),
    ({"temperature": "hot"}, "'grp.temperature' must be a number > 0.0, got 'hot'"),
    ({"mode": "c"}, "'grp.mode' must be one of a, b, got 'c'"),
    ({"mode": ""}, "'grp.mode' must be a non-empty string, got ''"),
    ({"mode": 1}, "'grp.mode' must be a non-empty string, got 1"),
    ({"flag": "yes"}, "'grp.flag' must be true or false, got 'yes'"),
    ({"flag": 1}, "'grp.flag' must be true or false, got 1"),
    ({"folder": ""}, "'grp.folder' must be a non-empty string, got ''"),
    ({"folder": None}, "'grp.folder' must be a non-empty string, got None"),
    ({"widths": []}, "'grp.widths' must be a non-empty list of integers >= 1, got []"),
    ({"widths": [0]}, "'grp.widths' must be a non-empty list of integers >= 1, got [0]"),
    ({"widths": 4}, "'grp.widths' must be a non-empty list of integers >= 1, got 4"),
    ({"parts": ["z"]}, "'grp.parts' must be a non-empty list of values from x, y, got ['z']"),
    ({"names": []}, "'grp.names' must be a non-empty list of strings, got []"),
    ({"names": [1]}, "'grp.names' must be a non-empty list of strings, got [1]"),
    ({"limit": 0}, "'grp.limit' must be an integer >= 1, got 0"),
    ({"limit": "auto"}, "'grp.limit' must be an integer >= 1, got 'auto'"),
    ({"batch": None}, "'grp.batch' must be a positive integer or auto, got None"),
    ({"batch": 0}, "'grp.batch' must be a positive integer or auto, got 0"),
    ({"compile": None}, "'grp.compile' must be true, false or auto, got None"),
    ({"compile": "maybe"}, "'grp.compile' must be true, false or auto, got 'maybe'"),
    ({"Inner-Group": {"size": 0}}, "'grp.Inner-Group.size' must be an integer >= 1, got 0"),
    ({"outer": {"inner": {"size": "2"}}}, "'grp.outer.inner.size' must be an integer >= 1, got '2'"),
    ({"Inner-Group": 5}, "'grp.Inner-Group' must be a group of keys, got 5"),
])
def test_wrong_value_names_the_full_key_and_what_is_accepted(changes, message):
    with pytest.raises(ConfigError) as info:
        read(**changes)
    assert str(info.value) == f"config key {message}"


@pytest.mark.parametrize("null", [None, "None", "none", "null"])
def test_optional_key_takes_null_and_its_published_spellings(null):
    assert read(limit=null).limit is None
    assert read(limit=4).limit == 4


def test_auto_keys():
    assert (read(batch="auto").batch, read(batch=7).batch) == (None, 7)
    assert (read(compile="auto").compile, read(compile=False).compile) == (None, False)


def test_missing_key_or_group_is_named():
    node = {k: v for k, v in GOOD.items() if k != "flag"}
    with pytest.raises(ConfigError, match=r"^config key 'grp.flag' is missing; add it to the config or pass it as an "
                                          r"override, e.g. \+grp.flag=\.\.\.$"):
        read_group(Schema, OmegaConf.create(node), "grp", set())
    with pytest.raises(ConfigError, match="^config group 'grp.outer' is missing$"):
        read_group(Schema, OmegaConf.create({k: v for k, v in GOOD.items() if k != "outer"}), "grp", set())
    with pytest.raises(ConfigError, match="^config group 'grp.extra' is missing$"):
        read(kind="special")
    with pytest.raises(ConfigError,
                       match=r"^config key 'dataset.RQ-VAE.lr' is missing; .* \+dataset.RQ-VAE.lr=\.\.\.$"):
        load("~dataset.RQ-VAE.lr")
    with pytest.raises(ConfigError, match="^config group 'dataset.TIGER.T5' is missing$"):
        load("~dataset.TIGER.T5")


def test_conditional_group_is_read_only_when_its_condition_holds():
    seen: set[str] = set()
    got = read(seen, kind="special", extra={"size": 3})
    assert got.extra == Inner(3) and "grp.extra.size" in seen
    seen = set()
    # left for the unknown-key check
    assert read(seen, extra={"size": 3}).extra is None and "grp.extra.size" not in seen
    # the real one: dataset.generator is read for dataset=generated only, and refused for another type
    assert load().data.generator is not None and load("dataset=amazon").data.generator is None
    with pytest.raises(ConfigError, match="unknown config key 'dataset.generator.seed'"):
        load("dataset=amazon", "+dataset.generator.seed=1")
    with pytest.raises(ConfigError, match="config key 'dataset.generator.n_users' must be an integer >= 10"):
        load("dataset.generator.n_users=3")


def test_check_hook_runs_with_the_group_path():
    with pytest.raises(ConfigError, match=r"^config key 'grp.count' must be <= grp.Inner-Group.size$"):
        read(count=9)
    with pytest.raises(ConfigError,
                       match=r"'dataset.generator.max_seq_len' must be >= dataset.generator.min_seq_len \(9\)"):
        load("dataset.generator.min_seq_len=9", "dataset.generator.max_seq_len=8")
    with pytest.raises(ConfigError, match="method.sid_loss_weight and method.embedding_loss_weight are both 0"):
        load("method.sid_loss_weight=0", "method.embedding_loss_weight=0")
