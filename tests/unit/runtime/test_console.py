"""What reaches the console: -v is taken off the command line, the quiet setup touches only library switches."""

from __future__ import annotations

import logging
import os
import warnings

import pytest

from medft.runtime import console


@pytest.fixture
def clean_console(monkeypatch):
    """Run console.setup without leaking its environment, warning filters or logger levels."""
    for key in (console.VERBOSE_ENV, *console.LIBRARY_ENV):
        monkeypatch.delenv(key, raising=False)
    levels = {name: logging.getLogger(name).level for name in console.LIBRARY_LOGGERS}
    with warnings.catch_warnings():
        yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_verbose_flags_are_removed_before_hydra_sees_them():
    assert console.split_verbose(["model=tiny", "-v", "train.max_steps=2"]) == (
        True,
        ["model=tiny", "train.max_steps=2"],
    )
    assert console.split_verbose(["--verbose"]) == (True, [])
    assert console.split_verbose(["hydra.verbose=true"]) == (True, ["hydra.verbose=true"])
    assert console.split_verbose(["hydra.verbose=[medft]"]) == (True, ["hydra.verbose=[medft]"])
    assert console.split_verbose(["hydra.verbose=false", "data.name=-v-like"]) == (
        False,
        ["hydra.verbose=false", "data.name=-v-like"],
    )


def test_quiet_setup_sets_library_switches_and_keeps_the_users_own(clean_console, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    assert console.setup(["model=tiny"]) == ["model=tiny"]
    assert not console.is_verbose()
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"  # the user's choice wins
    assert os.environ["DATASETS_VERBOSITY"] == "error"
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert logging.getLogger("matplotlib").level == logging.ERROR
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("a library notice", FutureWarning, stacklevel=1)
    assert not caught


def test_verbose_setup_leaves_every_library_alone(clean_console):
    before = logging.getLogger("matplotlib").level
    assert console.setup(["-v", "model=tiny"]) == ["model=tiny"]
    assert console.is_verbose() and os.environ[console.VERBOSE_ENV] == "1"
    assert "DATASETS_VERBOSITY" not in os.environ and "HF_DATASETS_DISABLE_PROGRESS_BARS" not in os.environ
    assert logging.getLogger("matplotlib").level == before
    # a worker started from a verbose parent stays verbose
    assert console.setup([]) == [] and console.is_verbose()


class _State:
    is_world_process_zero = True

    def __init__(self, max_steps=4, global_step=0):
        self.max_steps, self.global_step = max_steps, global_step


def test_training_bar_shows_losses_in_its_postfix_and_no_second_bar(capsys):
    bar = console.training_bar()
    state = _State()
    bar.on_train_begin(None, state, None)
    for step in (1, 2):
        state.global_step = step
        bar.on_step_end(None, state, None)
    bar.on_log(None, state, None, logs={"loss": 2.5, "learning_rate": 1e-4})
    bar.on_prediction_step(None, state, None, eval_dataloader=[0, 1])
    assert bar.eval_bar is None and bar.shown["validating"] == "1/2"
    bar.on_log(None, state, None, logs={"eval_loss": 2.25})
    bar.on_evaluate(None, state, None)
    assert bar.shown == {"loss": "2.5", "val": "2.25"}
    assert bar.bar.n == 2
    bar.on_train_end(None, state, None)
    printed = capsys.readouterr()
    assert "{'loss'" not in printed.out + printed.err  # no dict line per log step
