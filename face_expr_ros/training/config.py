"""Training configuration: a YAML file -> :class:`TrainConfig` (unknown keys are errors)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.network import NetworkConfig
from .losses import LossWeights


@dataclass
class DataConfig:
    """Which sets, how often each is drawn, and where teacher landmarks are cached."""

    root: str | None = None              # default: $FACE_EXPR_DATA or ../shared/data
    teacher_cache: str | None = None     # folder with annotations.jsonl (face_expr annotate)
    sets: dict[str, float] = field(default_factory=lambda: {
        "helen_train": 3.0, "ytf_train": 1.0, "utkface": 1.0, "lfw_gray": 1.0, "fer2013_train": 0.5})
    val_fraction: float = 0.1
    max_per_set: int | None = None       # cap, for quick runs and tests
    workers: int = 2
    crop_cache: bool = False             # cut samples from cached crops (training/crop_cache.py)
    cache_workers: int = 2               # processes that build a missing crop cache
    own_framing: float = 0.0             # share of crops framed on the network's own last
                                         # prediction (the tracking mode's input; pairs.py)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved beside its checkpoints."""

    output: str = "runs/train"
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_epochs: int = 50
    max_steps: int | None = None         # budget; None = until convergence or max_epochs
    max_minutes: float | None = None     # wall-clock budget
    patience: int = 5                    # validations without improvement before stopping
    min_delta: float = 1e-4              # improvement of validation NME that counts
    val_every_steps: int = 500
    val_max_faces: int | None = 1024     # a fixed, spread subset of the validation split
    log_every_steps: int = 20
    threads: int | None = None           # torch intra-op threads (None: torch default)
    init_weights: str | None = None      # .safetensors to start from (fine-tuning); same net config
    # exponential moving average of the weights (and batch-norm statistics), validated and saved
    # instead of the raw weights; None = off. 0.999 averages over about the last 1,000 steps
    ema_decay: float | None = None
    net: NetworkConfig = field(default_factory=NetworkConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    data: DataConfig = field(default_factory=DataConfig)


def _build(cls, values: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value, f"{where}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A config file's mapping. With ``base: OTHER.yaml`` (a path beside it) that file is read
    first and this one's keys replace its keys; a section (``net``, ``loss``, ``data``) is merged
    key by key, so a variant names only what it changes."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read training config {path}: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    base = values.pop("base", None)
    if base is None:
        return values
    seen = (*seen, path.resolve())
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen:
        raise ValueError(f"{path}: base {base} includes itself")
    merged = _read_yaml(base_path, seen)
    for key, value in values.items():
        section = merged.get(key)
        both = isinstance(section, dict) and isinstance(value, dict)
        merged[key] = {**section, **value} if both else value
    return merged


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML config (missing keys take the defaults above; ``base: FILE`` starts from
    another config beside it), then apply ``overrides``."""
    values: dict = _read_yaml(Path(path)) if path is not None else {}
    for key, value in (overrides or {}).items():
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return _build(TrainConfig, values, str(path or "config"))


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)
