"""Where the package, its shipped samples and its config tree are, and the resolvers YAML files use."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from medft.runtime.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SAMPLES_DIR = PACKAGE_DIR / "samples"


def _find_conf_dir() -> Path:
    """The config tree sits next to the package in a checkout (``conf/``)."""
    for candidate in (PACKAGE_DIR.parent / "conf", PACKAGE_DIR / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise ConfigError(f"medft config tree not found next to {PACKAGE_DIR}; reinstall with `pip install -e .`")


CONF_DIR = _find_conf_dir()


def slug(text: str, limit: int = 96) -> str:
    cleaned = re.sub(r"[^\w.,=+-]+", "_", str(text)).strip("_")
    return cleaned[:limit] or "defaults"


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("medft"):
        # ${medft:samples} -> the shipped sample data, wherever the package is installed.
        places = {"samples": str(SAMPLES_DIR), "package": str(PACKAGE_DIR)}
        OmegaConf.register_new_resolver("medft", lambda key: places[key])
    if not OmegaConf.has_resolver("medft_slug"):
        # Sweep job folders are named after their overrides; paths in overrides must not nest folders.
        OmegaConf.register_new_resolver("medft_slug", slug)


_register_resolvers()
