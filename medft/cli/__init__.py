"""What every entrypoint shares: one-line errors and a check of command-line overrides.

Hydra reports an unknown option or key over several lines and a hint about
HYDRA_FULL_ERROR; users meet these in their first hour, so medft checks overrides
against the config tree and schema first and answers in one line with the fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import sys
import typing
from pathlib import Path

from medft.config import CONF_DIR, ConfigViolations, RootConfig
from medft.config.loading import unwrap_optional
from medft.runtime.errors import ConfigError, MedftError

GROUPS = ("model", "data", "method", "experiment", "logger", "eval", "sweep")


def fail(message: str, code: int = 2) -> typing.NoReturn:
    print(f"medft: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def fail_all(problems: list[str], code: int = 2) -> typing.NoReturn:
    """Several problems at once: a header line, then each problem on its own line."""
    if len(problems) == 1:
        fail(problems[0], code)
    lines = [f"medft: error: {len(problems)} problems in the config:", *(f"  - {p}" for p in problems)]
    print("\n".join(lines), file=sys.stderr)
    raise SystemExit(code)


@contextlib.contextmanager
def user_errors():
    """Turn MedftError into one line on stderr (one line per violation of the config's rules)
    and exit status 2, no traceback."""
    try:
        yield
    except ConfigViolations as err:
        fail_all(err.violations)
    except MedftError as err:
        fail(str(err))


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _split_values(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    for sweep in ("choice(", "glob("):
        if value.startswith(sweep) and value.endswith(")"):
            value = value[len(sweep) : -1]
    return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]


def _check_key(path: list[str]) -> str | None:
    """None when the dotted key exists in the schema, else a one-line message."""
    node = RootConfig
    walked: list[str] = []
    for part in path:
        node = unwrap_optional(node)
        if typing.get_origin(node) in (dict, dict):
            node = typing.get_args(node)[1]
            walked.append(part)
            continue
        if not dataclasses.is_dataclass(node):
            return None  # a list index or a free-form value: Hydra checks the type
        hints = typing.get_type_hints(node)
        if part not in hints:
            where = ".".join(walked) or "the top level"
            close = difflib.get_close_matches(part, hints, n=1)
            hint = f"did you mean {'.'.join([*walked, close[0]])}?" if close else f"valid keys: {', '.join(hints)}"
            return f"{'.'.join([*walked, part])} is not a setting of {where}; {hint}"
        node = hints[part]
        walked.append(part)
    return None


def _typed_skeleton():
    """The schema with every optional section present, so any valid key can take a value."""
    from omegaconf import OmegaConf

    from medft.config import (
        EvalConfig,
        LoraSettings,
        MethodConfig,
        ModelConfig,
        QuantizationSettings,
        TinyArchitecture,
    )

    root = RootConfig(
        model=ModelConfig(tiny=TinyArchitecture()),
        method=MethodConfig(lora=LoraSettings(), quantization=QuantizationSettings()),
        eval=EvalConfig(),
    )
    return OmegaConf.structured(root)


def _check_value(key: str, raw: str, skeleton) -> str | None:
    """None when every value the override gives (sweeps included) fits the key's type."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from medft.config import SourceConfig

    try:
        override = OverridesParser.create().parse_override(f"{key}={raw}")
    except Exception:  # Hydra reports its own grammar errors
        return None
    from hydra.core.override_parser.types import IntervalSweep

    sweep = override.value() if override.is_sweep_override() else None
    if isinstance(sweep, IntervalSweep):  # an Optuna search range: check its two ends
        values = [sweep.start, sweep.end]
    else:
        values = list(override.sweep_iterator()) if sweep is not None else [override.value()]
    parts = key.split(".")
    if parts[:2] == ["data", "sources"] and len(parts) > 3 and parts[2] not in skeleton.data.sources:
        skeleton.data.sources[parts[2]] = SourceConfig()
    for value in values:
        if isinstance(value, str) and value.startswith("${"):
            continue  # an interpolation: resolved later
        try:
            OmegaConf.update(skeleton, key, value, merge=True)
        except OmegaConfBaseException as err:
            reason = str(err).splitlines()[0]
            return f"{key}={value}: {reason}"
    return None


def _has_slurm_launcher() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
    except ImportError:
        return False


def _hydra_reads(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_override(override)
    except Exception:  # Hydra's grammar error, whatever its class
        return False
    return True


def _quoted(value: str) -> str:
    """The value as one quoted Hydra string (its grammar escapes the quote and backslashes before it)."""
    quote = "'" if "'" not in value or '"' in value else '"'
    escaped = re.sub(r"(\\*)" + quote, lambda m: m.group(1) * 2 + "\\" + quote, value)
    return quote + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + quote


def quote_for_hydra(argv: list[str]) -> list[str]:
    """Quote override values Hydra's grammar cannot read, so any path works as typed.

    Hydra reads an unquoted value with a small grammar: Korean letters, parentheses and the
    like stop it, so AI Hub's own folder name (``120.초거대AI 사전학습용 헬스케어 질의응답 데이터``)
    fails even when the shell passed it as one argument. Such a value is wrapped in quotes
    for Hydra; one that still cannot be read stops with one line naming the key and the quoting.
    """
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if arg.startswith("-") or not sep or not value or key.strip() in GROUPS or _hydra_reads(arg):
            out.append(arg)
            continue
        quoted = f"{key}={_quoted(value)}"
        if not _hydra_reads(quoted):
            raise ConfigError(
                f"{key}: Hydra cannot read the value {value!r}; quote it for Hydra inside the shell's quotes, "
                f"e.g. \"{key}='...'\""
            )
        out.append(quoted)
    return out


def prepare_overrides(argv: list[str]) -> list[str]:
    """What every entrypoint does with its arguments before Hydra sees them: quote what
    Hydra's grammar cannot read, then check every key and value against the schema."""
    argv = quote_for_hydra(argv)
    check_overrides(argv)
    return argv


def check_overrides(argv: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError for unknown group options and config keys on the command line: one
    ConfigViolations naming every bad override, one line each."""
    skeleton: list = []  # built on first need, shared by this call's values
    found = [message for arg in argv if (message := _check_override(arg, conf_dir, skeleton)) is not None]
    if found:
        raise ConfigViolations(found)


def _check_override(arg: str, conf_dir: Path, skeleton: list) -> str | None:
    """None when one command-line argument names a known option or key with a value of its type."""
    if arg.startswith("-") or "=" not in arg:
        return None
    key, value = arg.split("=", 1)
    if key == "hydra/launcher" and value.startswith(("slurm", "submitit")) and not _has_slurm_launcher():
        return f'hydra/launcher={value} needs the SLURM launcher plugin: pip install -e ".[slurm]"'
    if key.startswith(("+", "~", "hydra")):
        return None
    key = key.removeprefix("override ")
    if key in GROUPS:
        options = group_options(key, conf_dir)
        for option in _split_values(value):
            if option in ("null", "") or option in options or "*" in option:
                continue
            close = difflib.get_close_matches(option, options, n=1)
            hint = f"did you mean {key}={close[0]}? " if close else ""
            return f"{key}={option} is not a {key} config; {hint}choose one of: {', '.join(options)}"
        return None
    message = _check_key(key.split("."))
    if message:
        return message
    if not skeleton:
        skeleton.append(_typed_skeleton())
    return _check_value(key, value, skeleton[0])
