"""How a schema field is declared: its default and its help text, side by side."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

HELP = "help"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with ``metadata={"help": help}``; ``factory`` for lists, dicts and sections."""
    if not help:
        raise ValueError("every config field needs a help text")
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={HELP: help})
    return dataclasses.field(default=default, metadata={HELP: help})


def help_of(field: dataclasses.Field) -> str:
    return str(field.metadata.get(HELP, ""))
