"""Every broken rule of a config is reported at once, one line each, and the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medft.cli import check_overrides
from medft.config import ConfigViolations, check_objective, validate, violations
from medft.config import rules as config_rules
from medft.runtime.errors import ConfigError

from conftest import REPO, compose_config

THREE = ["method.trainable_layers=2", "data.validation_ratio=0.7", "train.warmup_ratio=1.5"]
THREE_LINES = [
    "method.trainable_layers only applies to method=freeze, not method=lora",
    "data.validation_ratio=0.7 must be in [0, 0.5)",
    "train.warmup_ratio=1.5 must be in [0, 1)",
]


def test_a_sound_config_has_no_violations():
    assert violations(compose_config()) == []
    validate(compose_config())


def test_every_violation_is_listed_in_one_error():
    cfg = compose_config(THREE)
    assert violations(cfg) == THREE_LINES
    with pytest.raises(ConfigViolations) as err:
        validate(cfg)
    assert err.value.violations == THREE_LINES
    assert isinstance(err.value, ConfigError)
    lines = str(err.value).splitlines()
    assert lines[0] == "3 problems in the config:"
    assert lines[1:] == [f"  - {line}" for line in THREE_LINES]


def test_one_violation_keeps_its_one_line_message():
    with pytest.raises(ConfigError, match=r"^data.validation_ratio=0.7 must be in \[0, 0.5\)$"):
        validate(compose_config(["data.validation_ratio=0.7"]))


def test_rules_of_one_section_do_not_hide_each_other():
    cfg = compose_config(["train.max_length=8", "train.learning_rate=0", "train.save_steps=-1"])
    found = violations(cfg)
    assert any(v.startswith("train.max_length=8 is too short") for v in found)
    assert "train.learning_rate=0.0 must be > 0" in found
    assert any(v.startswith("train.save_steps=-1 must be >= 0") for v in found)


def test_each_rule_is_a_function_returning_lines():
    cfg = compose_config(THREE)
    for rule in config_rules.RULES:
        found = rule(cfg)
        assert isinstance(found, list) and all(isinstance(line, str) and "\n" not in line for line in found)


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["objective=accuracy"], "objective=accuracy is not a training metric; use one of train_loss,"),
        (["objective=benchmarks.kormedmcqa.accuracy"], "objective=benchmarks.kormedmcqa.accuracy needs the benchmark"),
    ],
)
def test_objective_is_checked_with_the_other_rules(overrides, line):
    cfg = compose_config([*overrides, "data.test_ratio=0.9"])
    found = violations(cfg)
    assert len(found) == 2 and found[1].startswith(line)
    with pytest.raises(ConfigError, match="^" + line.split(";")[0]):
        check_objective(cfg)


def test_objective_naming_a_scored_benchmark_passes():
    validate(compose_config(["objective=benchmarks.kormedmcqa.accuracy", "train.eval_benchmarks=[kormedmcqa]"]))


def test_bad_overrides_are_all_named_together():
    with pytest.raises(ConfigViolations) as err:
        check_overrides(["model=gpt5", "train.learnin_rate=1e-4", "train.epochs=three"])
    found = err.value.violations
    assert len(found) == 3
    assert found[0].startswith("model=gpt5 is not a model config")
    assert found[1].startswith("train.learnin_rate is not a setting of train")
    assert found[2].startswith("train.epochs=three")


def test_cli_prints_three_violations_one_line_each_and_exits_2(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "medft.train", *THREE, "logger=none", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("medft: error:"))
    assert lines[start] == "medft: error: 3 problems in the config:"
    assert lines[start + 1 : start + 4] == [f"  - {line}" for line in THREE_LINES]
