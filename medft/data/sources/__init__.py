"""Data sources: one :class:`SourceLoader` per source kind (``data.sources.<name>.kind``).

A loader turns one configured source into chat records by split and fills its report.
The registry maps each kind to its loader; a loader's module is imported when first used,
so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from medft.data.report import SourceReport

__all__ = ["LOADERS", "ModuleLoader", "SourceLoader", "loader", "register"]


@runtime_checkable
class SourceLoader(Protocol):
    kind: str  # the SourceKind value it reads

    @property
    def unit(self) -> str:
        """What the source's input ledger counts (files, lines, records...)."""

    @property
    def stratify(self) -> tuple[str, ...]:
        """Meta fields validation and test are stratified by when they are carved from train."""

    @property
    def group_by(self) -> tuple[str, ...]:
        """Meta fields whose records must share a split (one fact, several phrasings)."""

    def load(
        self, name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True
    ) -> dict[str, list[dict]]:
        """Records by split for the source configured as ``data.sources.<name>``."""


@dataclass(frozen=True)
class ModuleLoader:
    """A loader whose code is a module of this package: ``load``, ``STRATIFY`` and optionally
    ``UNIT`` and ``GROUP_BY``. The module is imported when first used."""

    kind: str
    module: str

    def _code(self):
        return importlib.import_module(self.module)

    @property
    def unit(self) -> str:
        return getattr(self._code(), "UNIT", "items")

    @property
    def stratify(self) -> tuple[str, ...]:
        return self._code().STRATIFY

    @property
    def group_by(self) -> tuple[str, ...]:
        return tuple(getattr(self._code(), "GROUP_BY", ()))

    def load(
        self, name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True
    ) -> dict[str, list[dict]]:
        return self._code().load(name, src, seed=seed, report=report, progress=progress)


LOADERS: dict[str, SourceLoader] = {}


def register(source: SourceLoader) -> SourceLoader:
    """Make ``source`` the loader of its kind."""
    LOADERS[source.kind] = source
    return source


def loader(kind: Any) -> SourceLoader:
    """The loader of a kind (a SourceKind member or its value); KeyError for an unknown one."""
    return LOADERS[str(kind)]


register(ModuleLoader("aihub", "medft.data.sources.aihub"))
register(ModuleLoader("pubmedqa_ko", "medft.data.sources.pubmedqa"))
register(ModuleLoader("hira", "medft.data.sources.hira"))
register(ModuleLoader("hira_csv", "medft.data.sources.hira_csv"))
