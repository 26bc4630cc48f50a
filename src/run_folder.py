"""A run folder's record is never damaged by a run that does not belong in it.

Hydra names the run folder and creates it before run.py's code runs; it writes nothing into it
(`hydra.output_subdir: null`). run.py then, in this order:
1. validates the configuration; a refusal removes the folders Hydra created for this run
   (`remove_created_folders`), so an invalid config leaves nothing behind;
2. takes the folder's lock without writing into it (src/cache.py, `run_folder_lock`);
3. checks that the folder holds no run of other settings (`check_settings`) and, once the data and
   semantic IDs are known, no checkpoint of other settings or data (src/training.py);
4. only then writes: Hydra's record of the configuration (`write_hydra_record`: .hydra/config.yaml,
   overrides.yaml, hydra.yaml), metrics.json, curves.jsonl, the W&B files, checkpoints.
A refused run therefore changes no file of the folder.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.cache import atomic_write
from src.errors import ExpectedError

LEFT_BY_A_START = ("run.log", ".run.lock")  # empty files a run leaves before it is accepted (Hydra's job log, the lock)
_CREATED: list[Path] = []  # folders missing when the run folder was named: Hydra creates them for this run


class RunFolderError(ExpectedError, RuntimeError):
    """The run folder holds another run that this one would damage."""
    label = "Run folder in use"
    exit_status = 2


def note_missing_folders(folder: Path) -> None:
    """Remember which of `folder` and its ancestors do not exist yet (called when Hydra names the run
    folder, before it creates it), so that a refused run can remove exactly those."""
    missing = []
    path = Path(folder).absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in missing:
        if path not in _CREATED:
            _CREATED.append(path)


def remove_created_folders() -> None:
    """Remove the folders Hydra created for this run, deepest first, where they hold nothing but what a
    start leaves (LEFT_BY_A_START, empty)."""
    for folder in sorted(_CREATED, key=lambda p: len(p.parts), reverse=True):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        if all(entry.is_file() and entry.name in LEFT_BY_A_START and entry.stat().st_size == 0 for entry in entries):
            for entry in entries:
                entry.unlink(missing_ok=True)
            try:
                folder.rmdir()
            except OSError:
                pass
    _CREATED.clear()


def saved_config(folder: Path) -> dict[str, Any] | None:
    """The configuration the folder's run was started with (.hydra/config.yaml), None if it has none."""
    path = Path(folder) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # noqa: BLE001  an unreadable record: nothing to compare with, the checkpoints still guard
        return None
    return config if isinstance(config, dict) else None


def differing_settings(theirs: dict[str, Any], mine: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, value there, value here) of the settings that set two runs apart (those results tables
    group by, and the seed)."""
    from src.results import ABSENT, _ignored, flat_settings

    a, b = flat_settings(theirs), flat_settings(mine)
    return [(key, a.get(key, ABSENT), b.get(key, ABSENT)) for key in sorted(set(a) | set(b))
            if (key == "seed" or not _ignored(key)) and a.get(key, ABSENT) != b.get(key, ABSENT)]


def finished(folder: Path) -> bool:
    """Whether the folder's run ended with its test (metrics.json holds test metrics)."""
    import json

    try:
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and any("_test/" in key for key in metrics)


def check_settings(folder: Path, config: DictConfig, stop_after: str | None) -> None:
    """RunFolderError where the folder holds a run of other settings, or a finished run that this one,
    stopping after `stop_after`, would replace with a partial record. Nothing is written."""
    theirs = saved_config(folder)
    if theirs is None:
        return
    mine = OmegaConf.to_container(config, resolve=False)
    differ = differing_settings(theirs, mine)
    advice = ("; to keep it, give this run its own folder: another experiment_id=... or output_path=... "
              "(or, to start it over, move the folder away first)")
    if differ:
        shown = "; ".join(f"{key}={there} there, {here} here" for key, there, here in differ[:8])
        more = f" (and {len(differ) - 8} more)" if len(differ) > 8 else ""
        raise RunFolderError(f"{Path(folder).resolve()} holds a run with other settings: {shown}{more}{advice}")
    if stop_after is not None and finished(folder):
        raise RunFolderError(f"{Path(folder).resolve()} holds a finished run (its test metrics in metrics.json); "
                             f"this run stops after {stop_after} and would replace its record with a partial one"
                             f"{advice}")


def write_hydra_record(folder: Path, config: DictConfig, hydra_config: DictConfig | None,
                       overrides: list[str]) -> None:
    """Hydra's record of the run, as Hydra writes it, once the run is accepted: .hydra/config.yaml (the
    composed configuration, unresolved), hydra.yaml and overrides.yaml."""
    record = Path(folder) / ".hydra"
    for name, content in (("config.yaml", config),
                          ("hydra.yaml", OmegaConf.create({"hydra": hydra_config}) if hydra_config is not None
                           else None),
                          ("overrides.yaml", OmegaConf.create(list(overrides)))):
        if content is None:
            continue
        with atomic_write(record / name) as handle:
            handle.write(OmegaConf.to_yaml(content))


def repeated_overrides(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(key, its values) of every key given more than once on the command line (Hydra keeps the last
    silently)."""
    seen: dict[str, list[str]] = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep:
            seen.setdefault(key.lstrip("+~"), []).append(value)
    return [(key, values) for key, values in seen.items() if len(values) > 1]
