"""Every config field has help text; docs/config.md is generated from it and kept fresh; --help points to it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from medft.config import RootConfig, TrainConfig
from medft.config import docs as config_docs
from medft.config.schema import setting
from medft.config.schema.fields import help_of

from conftest import REPO


def _dataclasses(root: type) -> set[type]:
    found, todo = set(), [root]
    while todo:
        schema = todo.pop()
        if schema in found:
            continue
        found.add(schema)
        for tp in typing.get_type_hints(schema).values():
            for arg in (tp, *typing.get_args(tp), *(a for t in typing.get_args(tp) for a in typing.get_args(t))):
                if dataclasses.is_dataclass(arg):
                    todo.append(arg)
    return found


def test_every_field_of_every_schema_has_help():
    schemas = _dataclasses(RootConfig)
    assert len(schemas) >= 15
    missing = [f"{s.__name__}.{f.name}" for s in schemas for f in dataclasses.fields(s) if len(help_of(f)) < 10]
    assert not missing, f"fields without help text: {missing}"


def test_a_field_without_help_is_refused():
    with pytest.raises(ValueError, match="help"):
        setting(1)


def test_docs_config_md_is_fresh():
    assert config_docs.DOCS_PATH.is_file(), "docs/config.md is missing; run python -m medft.config.docs"
    assert not config_docs.is_stale(), "docs/config.md is stale; regenerate it with python -m medft.config.docs"


def test_docs_have_one_table_per_group_and_the_top_level_keys():
    text = config_docs.render()
    for group in ("model", "data", "method", "train", "eval", "chat", "export", "logger", "launcher"):
        assert f"\n## {group}\n" in text
    assert "\n## top-level keys\n" in text
    assert "| key | type | default | help |" in text
    assert "| `train.learning_rate` | float | `0.0002` | Peak learning rate; > 0. |" in text
    assert "| `method.lora.target` | all / attention / mlp | `all` |" in text
    assert "| `data.sources.<name>.kind` |" in text
    assert "| `objective` | str | `eval_loss` |" in text


def _extended_root(**train_fields):
    """A copy of the schema whose train section has extra or changed fields."""
    train = dataclasses.make_dataclass(
        "TrainConfig", [(name, type(f.default), f) for name, f in train_fields.items()], bases=(TrainConfig,)
    )
    return dataclasses.make_dataclass(
        "RootConfig", [("train", train, setting(help="The training loop.", factory=train))], bases=(RootConfig,)
    )


def test_freshness_check_fails_when_a_field_is_added_without_regenerating(tmp_path):
    root = _extended_root(new_knob=setting(3, "A knob added to the schema."))
    assert "| `train.new_knob` | int | `3` | A knob added to the schema. |" in config_docs.render(root)
    assert config_docs.is_stale(root=root)
    written = tmp_path / "config.md"
    written.write_text(config_docs.render(root), encoding="utf-8")
    assert not config_docs.is_stale(written, root=root)
    assert config_docs.is_stale(written)  # the shipped schema lacks the knob


def test_freshness_check_fails_when_a_help_text_changes():
    root = _extended_root(epochs=setting(3.0, "Reworded help of epochs."))
    assert "Reworded help of epochs." in config_docs.render(root)
    assert config_docs.is_stale(root=root)


def test_docs_command_writes_and_checks(tmp_path):
    target = tmp_path / "docs" / "config.md"
    assert config_docs.main(["--check", "--output", str(target)]) == 1
    assert config_docs.main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == config_docs.render()
    assert config_docs.main(["--check", "--output", str(target)]) == 0


@pytest.mark.parametrize("command", ["train", "prepare", "evaluate", "chat", "serve"])
def test_help_lists_the_groups_and_points_to_the_config_reference(command):
    out = subprocess.run(
        [sys.executable, "-m", f"medft.{command}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "== Config groups" in out.stdout
    assert "model: exaone, exaone_2.4b, llama" in out.stdout
    assert "method: freeze, full, lora, qlora" in out.stdout
    assert "docs/config.md" in out.stdout
