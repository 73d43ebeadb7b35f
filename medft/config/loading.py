"""Saved configs (a run's config.resolved.yaml, a frozen launch config) read back through the schema.

A config reloaded with plain ``OmegaConf.load`` holds strings where the schema has enums and
lacks keys added to the schema since it was saved. :func:`load_config` merges it onto the
structured schema instead, so it reads exactly like a freshly composed one. Keys the schema
does not know (``+key=value`` overrides, settings of an older release) are kept as they are.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from medft.config.schema import RootConfig
from medft.runtime.errors import ConfigError


def unwrap_optional(tp):
    """Optional[X] -> X; leave other types alone."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def split_known(data: Any, schema: Any, path: tuple[str, ...] = ()) -> tuple[Any, list[tuple[tuple[str, ...], Any]]]:
    """``data`` without the keys ``schema`` does not know, and those keys as (path, value) pairs."""
    schema = unwrap_optional(schema)
    if not isinstance(data, dict):
        return data, []
    if typing.get_origin(schema) is dict:
        value_type = typing.get_args(schema)[1]
        known, extra = {}, []
        for key, value in data.items():
            known[key], more = split_known(value, value_type, (*path, str(key)))
            extra += more
        return known, extra
    if not dataclasses.is_dataclass(schema):
        return data, []
    hints = typing.get_type_hints(schema)
    known, extra = {}, []
    for key, value in data.items():
        if key in hints:
            known[key], more = split_known(value, hints[key], (*path, key))
            extra += more
        else:
            extra.append(((*path, key), value))
    return known, extra


def from_container(data: dict, schema: type = RootConfig, where: str = "the config") -> DictConfig:
    """Plain saved data typed by ``schema``: enums as enums, missing keys at their defaults."""
    known, extra = split_known(data, schema)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), known)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        reason = str(err).splitlines()[0]
        raise ConfigError(
            f"{where}: {key} does not fit the schema ({reason}); was it written by another release?"
        ) from None
    for path, value in extra:
        parent = OmegaConf.select(cfg, ".".join(path[:-1])) if len(path) > 1 else cfg
        if isinstance(parent, DictConfig):
            with open_dict(parent):
                parent[path[-1]] = value
    return cfg


def load_config(path: Path | str, schema: type = RootConfig) -> DictConfig:
    """A saved config file, typed by ``schema`` (see :func:`from_container`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; expected a config saved by medft")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds no config mapping")
    return from_container(data, schema, where=str(path))
