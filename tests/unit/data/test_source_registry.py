"""One loader per source kind, asked by kind."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medft.config import SourceKind
from medft.data import sources


def test_every_source_kind_has_a_loader():
    assert set(sources.LOADERS) == {k.value for k in SourceKind}
    for kind in SourceKind:
        loader = sources.loader(kind)
        assert loader is sources.loader(kind.value)
        assert isinstance(loader, sources.SourceLoader)
        assert loader.kind == kind.value


@pytest.mark.parametrize(
    ("kind", "unit", "stratify", "group_by"),
    [
        ("aihub", "files", ("category", "intention"), ("source_split", "category", "disease", "intention")),
        ("pubmedqa_ko", "records", ("final_decision",), ()),
        ("hira", "lines", ("category",), ()),
        ("hira_csv", "table items", ("measure",), ("file", "row", "measure")),
    ],
)
def test_loaders_describe_their_ledger_and_splits(kind, unit, stratify, group_by):
    loader = sources.loader(kind)
    assert (loader.unit, tuple(loader.stratify), loader.group_by) == (unit, stratify, group_by)


def test_an_unknown_kind_has_no_loader():
    with pytest.raises(KeyError):
        sources.loader("csv")


def test_the_registry_imports_no_loader_until_asked():
    code = (
        "import sys, medft.data.sources as s; "
        "loaded = [m for m in sys.modules if m.startswith('medft.data.sources.')]; "
        "assert not loaded, loaded; "
        "bad = {'datasets', 'torch', 'transformers', 'yaml'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
