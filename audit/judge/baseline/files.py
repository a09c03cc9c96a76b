"""Baseline files: one `<env_id>.json` per environment, and saving results as baselines.

One JSON file per env-id with stable bytes (sorted keys, sorted outputs, no timestamps, no
paths), so baselines can live in git and a change to one is reviewed as a diff before
`--update` is committed. A baseline is only rewritten with `update`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from audit.errors import UserError
from audit.judge.rows import cell_label, comparable, env_of, one_line, settings_key
from audit.store.atomic import write_text
from audit.store.results import ResultsFile, read_all

FORMAT = "repro-audit/baseline"
SCHEMA = 1
SUFFIX = ".json"
ENVIRONMENT_KEYS = ("torch", "numpy", "python", "os")  # plus "cpu": the CPU model
# An env-id becomes a file name: nothing that could leave the folder or hide the file.
SAFE_ENV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def environment_summary(header: dict[str, Any]) -> dict[str, Any]:
    """The few environment facts a reader of a baseline needs: versions, OS, CPU model."""
    environment = header.get("environment") or {}
    summary = {key: environment.get(key) for key in ENVIRONMENT_KEYS}
    cpu = environment.get("cpu")
    summary["cpu"] = cpu.get("model") if isinstance(cpu, dict) else cpu
    return summary


@dataclass(frozen=True, order=True)
class Key:
    """One baselined value: an output of a scenario on one device, settings and env-id."""

    env_id: str
    device: str
    settings: str  # sorted JSON, see settings_key
    scenario: str
    output: str

    @classmethod
    def of(cls, row: dict[str, Any], env_id: str) -> Key:
        device = str(row.get("device"))
        return cls(env_id, device, settings_key(row.get("settings"), device),
                   str(row["scenario"]), str(row["output"]))

    @property
    def unit(self) -> tuple[str, str, str, str]:
        """(env, device, settings, scenario): what a scenario-level failure row covers."""
        return (self.env_id, self.device, self.settings, self.scenario)

    def label(self) -> str:
        return f"{cell_label(self.scenario, self.output, self.device, self.settings)} " \
               f"env {one_line(self.env_id)}"


@dataclass(frozen=True)
class Entry:
    """What a baseline keeps of one value: enough to tell same or not, and by how much."""

    digest: str
    dtype: str | None
    shape: list[int] | None
    sample: dict[str, Any] | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Entry:
        return cls(row["digest"], row.get("dtype"), row.get("shape"), row.get("sample"))


@dataclass
class Baseline:
    """One `<env_id>.json`: the environment summary and every baselined value of it."""

    env_id: str
    environment: dict[str, Any]
    entries: dict[Key, Entry] = field(default_factory=dict)

    def by_unit(self) -> dict[tuple[str, str, str, str], list[Key]]:
        units: dict[tuple[str, str, str, str], list[Key]] = {}
        for key in sorted(self.entries):
            units.setdefault(key.unit, []).append(key)
        return units

    def to_json(self) -> dict[str, Any]:
        outputs = []
        for key in sorted(self.entries):
            entry = self.entries[key]
            outputs.append({
                "device": key.device, "settings": json.loads(key.settings),
                "scenario": key.scenario, "output": key.output, "digest": entry.digest,
                "dtype": entry.dtype, "shape": entry.shape, "sample": entry.sample,
            })
        return {"record": FORMAT, "schema": SCHEMA, "env_id": self.env_id,
                "environment": self.environment, "outputs": outputs}


def baseline_path(folder: Path, env_id: str) -> Path:
    if not SAFE_ENV_ID.fullmatch(env_id):
        raise UserError(f"env-id {env_id!r} cannot name a baseline file")
    return folder / f"{env_id}{SUFFIX}"


def load_baseline(path: Path) -> Baseline:
    """Read and validate one baseline file; anything wrong is a UserError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"{path}: cannot read baseline ({error.strerror or error})") from None
    except ValueError as error:
        raise UserError(f"{path}: corrupt baseline, not valid JSON ({error})") from None
    problem = _problem(data, path)
    if problem:
        raise UserError(f"{path}: corrupt baseline, {problem}")
    baseline = Baseline(data["env_id"], data.get("environment") or {})
    for item in data["outputs"]:
        device = str(item["device"])
        key = Key(baseline.env_id, item["device"], settings_key(item["settings"], device),
                  item["scenario"], item["output"])
        baseline.entries[key] = Entry(item["digest"], item.get("dtype"), item.get("shape"),
                                      item.get("sample"))
    return baseline


def _problem(data: Any, path: Path) -> str | None:
    """What makes `data` no baseline of the env-id its file is named for (None: fine)."""
    if not isinstance(data, dict) or data.get("record") != FORMAT:
        return "not a repro-audit baseline"
    schema = data.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA:
        return f"schema version {schema!r} is newer than this reader's {SCHEMA}"
    if data.get("env_id") != path.name[: -len(SUFFIX)]:
        return f"its env_id {data.get('env_id')!r} does not match its file name"
    if not isinstance(data.get("outputs"), list):
        return "no list of outputs"
    for number, item in enumerate(data["outputs"], start=1):
        if not isinstance(item, dict) or not all(
                isinstance(item.get(name), str)
                for name in ("device", "scenario", "output", "digest")) \
                or not isinstance(item.get("settings"), dict):
            return f"output {number} lacks device, settings, scenario, output or digest"
    return None


def write_baseline(path: Path, baseline: Baseline) -> Path:
    """Written atomically, so a reader never sees half a baseline."""
    text = json.dumps(baseline.to_json(), sort_keys=True, indent=1, allow_nan=False) + "\n"
    return write_text(path, text)


def baseline_files(folder: Path) -> dict[str, Path]:
    """`<env_id>.json` files of the folder, by env-id (a UserError when it holds none)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such baseline folder")
    try:
        found = {path.name[: -len(SUFFIX)]: path for path in sorted(folder.glob("*" + SUFFIX))
                 if not path.name.startswith(".")}
    except OSError as error:
        raise UserError(f"{folder}: cannot read ({error.strerror or error})") from None
    if not found:
        raise UserError(f"{folder}: holds no baselines (*{SUFFIX}); "
                        "create them with `repro-audit baseline save`")
    return found


def save(results_paths: list[str], to: Path, update: bool = False) -> int:
    """Store every `ok` and repeatable value of the results as baselines in `to`.

    Returns how many values were stored. An existing baseline of the same env-id is only
    rewritten with `update` (its values of this run replaced, the others kept): a baseline
    is the reviewed reference, so replacing it must be a decision, not a side effect.
    """
    return save_files(read_all(results_paths), to, update, ", ".join(results_paths))


def refuse_overwrite(folder: Path, env_ids: Iterable[str], update: bool) -> dict[str, Path]:
    """The baseline file of each env-id in `folder`; a UserError when one exists already
    and `update` is not given, or when `folder` is a file (before anything is written)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    targets = {env_id: baseline_path(folder, env_id) for env_id in sorted(env_ids)}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not update:
        raise UserError(f"{existing[0]}: a baseline for this environment already exists "
                        "(--update rewrites after review)")
    return targets


def save_files(files: list[ResultsFile], to: Path, update: bool = False,
               source: str = "results") -> int:
    """`save` of results already read (or built in memory, as the pytest plugin does);
    `source` names them in the error when none holds a value to save."""
    runs: dict[str, Baseline] = {}
    origin: dict[Key, Path] = {}
    for item in files:
        for row in item.rows:
            if not comparable(row):
                continue
            env_id = env_of(row, item)
            run = runs.setdefault(env_id, Baseline(env_id, environment_summary(item.header)))
            key, entry = Key.of(row, env_id), Entry.of(row)
            known = run.entries.get(key)
            if known is not None and known.digest != entry.digest:
                raise UserError(
                    f"{key.label()}: {origin[key]} and {item.path} disagree "
                    f"({known.digest[:12]} vs {entry.digest[:12]}); save them one at a time")
            run.entries[key] = entry
            origin.setdefault(key, item.path)
    if not runs:
        raise UserError(f"{source}: no ok and repeatable outputs to save")
    folder = Path(to)
    targets = refuse_overwrite(folder, runs, update)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{folder}: cannot create ({error.strerror or error})") from None
    stored = 0
    for env_id, path in targets.items():
        run = runs[env_id]
        stored += len(run.entries)
        if path.exists():
            kept = load_baseline(path).entries
            kept.update(run.entries)
            run.entries = kept
        write_baseline(path, run)
    return stored
