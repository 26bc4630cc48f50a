"""The docs stay true: every relative link and repository path the README and docs/ name exists, and every
configuration key they name is declared."""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from conftest import REPO, compose

DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)
# the repository's own top-level entries: a name that starts with one of them is a path to check
ROOTS = ("run.py", "configs/", "src/", "ID_generation/", "scripts/", "docs/", "tests/", "Makefile", "requirements",
         "env.yml", ".ci/", "LICENSE", "CITATION.cff", "pyproject.toml")
# paths that runs make (caches, outputs, bundles): named in the docs, never in the repository
MADE_BY_RUNS = ("ID_generation/ID", "ID_generation/preprocessing/raw_data", "ID_generation/preprocessing/processed",
                "docs/reproduction/plan.json", "docs/reproduction/calls", "docs/reproduction/curves")
PLACEHOLDER = re.compile(r"[{}*<>]|\.\.\.|OUT_DIR|FOLDER|RUN_DIR|DATE|GPU|NAME|KEY")
# a key named as such (`+key=...` adds one: the docs show misspelt ones being refused that way)
KEY = re.compile(r"^((?:dataset|method|evaluation|distributed|logging)\.[A-Za-z0-9_.\-]+?)(?:=.*)?$")


def text_of(path: Path) -> str:
    return path.read_text()


def doc_id(path: Path) -> str:
    return str(path.relative_to(REPO))


def named_tokens(text: str) -> list[str]:
    """Backticked spans and the words of fenced blocks: where docs name paths, commands and keys."""
    tokens = [span.strip() for span in SPAN.findall(text)]
    for block in FENCE.findall(text):
        tokens += block.split()
    return [token.strip("\"'(),;:") for token in tokens]


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_exists(doc):
    missing = []
    for target in LINK.findall(text_of(doc)):
        target = target.split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):  # an anchor of the page, or a web address
            continue
        if not (doc.parent / target).exists():
            missing.append(target)
    assert not missing, f"{doc_id(doc)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_repository_path_named_exists(doc):
    missing = []
    for token in named_tokens(text_of(doc)):
        for word in token.split():
            word = word.split("=")[-1].rstrip(".,:;)").removeprefix("./")
            if not word.startswith(ROOTS) or PLACEHOLDER.search(word) or word.startswith(MADE_BY_RUNS):
                continue
            path = word.split(":")[0]  # `file.py:123`
            if not (REPO / path).exists():
                missing.append(word)
    assert not missing, f"{doc_id(doc)} names paths that do not exist: {sorted(set(missing))}"


@cache
def declared_configs() -> tuple[DictConfig, ...]:
    return tuple(compose(f"dataset={name}") for name in ("generated", "amazon", "steam", "custom"))


def declared(key: str) -> bool:
    """A key of some shipped configuration (a group, or a key; `group.*` names the group)."""
    from src.config import REFUSED_KEYS

    if key in REFUSED_KEYS:  # named by the docs as refused
        return True
    key = key.removesuffix(".*").rstrip(".")
    for config in declared_configs():
        node: object = config
        for part in key.split("."):
            if not isinstance(node, DictConfig) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None or OmegaConf.select(config, key, default="absent") != "absent":
            return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_config_key_named_is_declared(doc):
    unknown = []
    for token in named_tokens(text_of(doc)):
        for word in token.split():
            match = KEY.match(word)
            if word.endswith((".md", ".py", ".yaml", ".json")):  # a file (docs/method.md), not a key
                continue
            if match and not PLACEHOLDER.search(match.group(1)) and not declared(match.group(1)):
                unknown.append(match.group(1))
    assert not unknown, f"{doc_id(doc)} names configuration keys that no config declares: {sorted(set(unknown))}"
