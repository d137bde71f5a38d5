"""Frozen config dataclasses to and from plain dicts and YAML/JSON files.

Every run's settings are a tree of frozen dataclasses (`TrainConfig`, `DataConfig`,
`FinetuneConfig`, ...); these helpers write that tree next to the run's outputs and
read it back, so the run folder alone says what was computed.

    save_config(config, out / "finetune_config.yaml")
    again = load_config(FinetuneConfig, out / "finetune_config.yaml")   # == config
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(config) -> dict[str, Any]:
    """The dataclass tree as nested dicts (tuples stay tuples; `save_config` writes lists)."""
    return dataclasses.asdict(config)


def _plain(value):
    """YAML/JSON-safe: tuples as lists, mappings as dicts, recursively."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(hint, value):
    """`value` read from a file, shaped as the field's type `hint` asks (dataclass, tuple)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
        if len(kinds) > 1 and isinstance(value, Mapping):
            return config_from_dict(_class_of_kind(kinds, value), value)
        for arg in typing.get_args(hint):
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return config_from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, (list, tuple)):
                return tuple(value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return config_from_dict(hint, value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _kind(cls) -> str | None:
    """The default of a dataclass's `kind` field: what names it among a union's choices."""
    field = {f.name: f for f in dataclasses.fields(cls)}.get("kind")
    return None if field is None else field.default


def _class_of_kind(classes, value: Mapping):
    """The one of several dataclasses a union field may hold that `value["kind"]` names."""
    by_kind = {_kind(c): c for c in classes}
    if None in by_kind or len(by_kind) < len(classes):
        raise TypeError(f"a field holding one of {[c.__name__ for c in classes]} needs a distinct `kind` in each")
    kind = value.get("kind")
    if kind not in by_kind:
        raise ValueError(f"kind {kind!r} is none of {sorted(by_kind)} (the settings: {dict(value)})")
    return by_kind[kind]


def config_from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
    """`cls` (a dataclass) from `config_to_dict`'s output or a file's; nested dataclasses
    and tuples are rebuilt from their field types (a field that may hold one of several
    dataclasses, from the value's `kind`). An unknown key is an error naming it."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(
            f"{cls.__name__} has no field {', '.join(map(repr, unknown))} (fields: {', '.join(sorted(names))})"
        )
    return cls(**{k: _convert(hints[k], v) for k, v in d.items()})


def write_atomic(path: str | Path, write) -> None:
    """`write(tmp)` into a file of this process's own (same suffix), then renamed to `path`:
    readers, and other processes writing the same file, never see half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def write_text_atomic(path: str | Path, text: str) -> None:
    """`text` written to `path` atomically (`write_atomic`)."""
    write_atomic(path, lambda tmp: tmp.write_text(text))


def save_config(config, path: str | Path) -> None:
    """Write `config` as YAML (.yaml/.yml) or JSON (any other suffix), atomically."""
    path = Path(path)
    values = _plain(config_to_dict(config))
    if path.suffix in (".yaml", ".yml"):
        import yaml

        text = yaml.safe_dump(values, sort_keys=False)
    else:
        text = json.dumps(values, indent=2)
    write_text_atomic(path, text)


def load_config(cls: type[T], path: str | Path) -> T:
    """`cls` from a file `save_config` wrote."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(path.read_text())
    else:
        values = json.loads(path.read_text())
    return config_from_dict(cls, values)


def flat_items(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """{"data.batch_size": 10, ...} of nested mappings (sequences as lists)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
            out.update(flat_items(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = _plain(value)
    return out


def config_differences(saved, given) -> list[str]:
    """Dotted field names whose values differ between two configs of one class."""
    a, b = flat_items(_plain(config_to_dict(saved))), flat_items(_plain(config_to_dict(given)))
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def record_config(config, path: str | Path, resume: bool, may_change: tuple[str, ...] = (), write: bool = True) -> None:
    """Save `config` at `path` (the run folder's record) when `write` (the process that
    writes files). On resume the saved config must equal `config` except the dotted
    fields matching a glob of `may_change`; a difference is an error naming the fields."""
    path = Path(path)
    if resume and path.exists():
        differ = [
            k
            for k in config_differences(load_config(type(config), path), config)
            if not any(fnmatch.fnmatchcase(k, pattern) for pattern in may_change)
        ]
        if differ:
            raise ValueError(
                f"resuming the run of {path} with other settings: {', '.join(differ)} differ; "
                "resume with the saved settings or start a new run"
            )
    if write:
        save_config(config, path)


class ConfigIO:
    """`replace`, `to_dict`/`from_dict` and `save`/`load` (YAML or JSON) of a frozen config
    dataclass, through the functions above."""

    def replace(self: T, **changes) -> T:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        return config_from_dict(cls, d)

    def save(self, path: str | Path) -> None:
        save_config(self, path)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return load_config(cls, path)
