"""What reaches the user's console.

At the default verbosity a command prints medft's own lines and progress bars only: the
training bar, one bar per data stage, and the summary at the end. Library notices nobody can
act on (``datasets`` "Saving the dataset" bars, transformers' "Loading weights" bar, font-cache
messages, deprecation warnings) are switched off with each library's own switches. ``-v`` or
``--verbose`` anywhere on a command line (or ``hydra.verbose=...``, or ``MEDFT_VERBOSE=1`` in the
environment) leaves every library as it is, so everything shows again.

Every command calls :func:`setup` with its arguments first; it removes ``-v`` before Hydra sees
them and records the choice in the environment, so the workers of a multi-process job print
the same way. :func:`quiet_known_warnings` is the part that needs transformers imported: the
code that is about to load a model calls it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VERBOSE_ENV = "MEDFT_VERBOSE"
VERBOSE_FLAGS = ("-v", "--verbose")

# Loggers of libraries whose notices the user cannot act on; they still reach the console at ERROR.
LIBRARY_LOGGERS = (
    "accelerate",
    "bitsandbytes",
    "datasets",
    "filelock",
    "fsspec",
    "httpcore",
    "httpx",
    "huggingface_hub",
    "matplotlib",
    "numexpr",
    "peft",
    "PIL",
    "torch",
    "transformers",
    "trl",
    "urllib3",
)

# The libraries' own switches, read when they are imported (a user's own setting wins).
LIBRARY_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}


def _is_hydra_verbose(arg: str) -> bool:
    key, sep, value = arg.partition("=")
    return bool(sep) and key.lstrip("+") == "hydra.verbose" and value.strip().lower() not in ("false", "null", "[]", "")


def split_verbose(argv: list[str]) -> tuple[bool, list[str]]:
    """(verbose?, the arguments without ``-v``/``--verbose``); ``hydra.verbose=...`` stays for Hydra."""
    rest = [arg for arg in argv if arg not in VERBOSE_FLAGS]
    return len(rest) != len(argv) or any(_is_hydra_verbose(arg) for arg in rest), rest


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def setup(argv: list[str] | None = None) -> list[str]:
    """Set the console up once, at the start of a command; returns the arguments Hydra should see.

    Cheap on purpose (no library is imported), so ``--help`` and ``--cfg job`` stay fast.
    """
    verbose, rest = split_verbose(list(argv or []))
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    if is_verbose():
        return rest
    os.environ.setdefault(VERBOSE_ENV, "0")
    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _quiet_imported()
    return rest


def _quiet_imported() -> None:
    """Libraries imported before :func:`setup` ran no longer read their environment switches."""
    if "datasets" in sys.modules:
        from datasets.utils import logging as datasets_logging

        datasets_logging.set_verbosity_error()
        datasets_logging.disable_progress_bar()
    if "transformers" in sys.modules:
        _quiet_transformers()


def _quiet_transformers() -> None:
    """No "Loading weights" bar and no advisory notices; a download from the hub keeps its bar."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    downloads_shown = not hub_utils.are_progress_bars_disabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()  # also turns the hub's bars off
    if downloads_shown:
        hub_utils.enable_progress_bars()


def quiet_known_warnings() -> None:
    """Silence library plumbing the user cannot act on, before a model is loaded.

    TRL and peft still pass names that transformers 5 renamed (a FutureWarning on every
    load), and bitsandbytes notes on every import that an optional CPU kernel package is
    absent although its fallback is what runs, correctly. Shown again with ``-v``.
    """
    if is_verbose():
        return
    warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed in v6.*", category=FutureWarning)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    _quiet_transformers()


def quiet_trainer_progress(trainer) -> None:
    """Replace the Trainer's progress output (a bar plus a printed dict at every log step and a
    second bar at every evaluation) with one bar whose postfix carries the latest losses."""
    if is_verbose():
        return
    from transformers.trainer_callback import ProgressCallback

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(training_bar())


def training_bar():
    """A TrainerCallback: one training bar, validation progress shown in its postfix."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TrainingBar(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None
            self.eval_bar = None
            self.step = 0
            self.shown: dict[str, str] = {}
            self.evaluated = 0

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", dynamic_ncols=True)
            self.step = state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.step)
            self.step = state.global_step

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if not state.is_world_process_zero:
                return
            total = (
                len(eval_dataloader) if eval_dataloader is not None and hasattr(eval_dataloader, "__len__") else None
            )
            if self.bar is not None:  # inside training: no second bar, the postfix counts
                self.evaluated += 1
                self._postfix(validating=f"{self.evaluated}/{total}" if total else str(self.evaluated))
                return
            if self.eval_bar is None:
                self.eval_bar = tqdm(total=total, desc="validation", leave=False, dynamic_ncols=True)
            self.eval_bar.update(1)

        def on_evaluate(self, args, state, control, **kwargs):
            self.evaluated = 0
            if self.shown.pop("validating", None) is not None:
                self._postfix()
            if self.eval_bar is not None:
                self.eval_bar.close()
                self.eval_bar = None

        on_predict = on_evaluate

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is None or not logs:
                return
            if "loss" in logs:
                self.shown["loss"] = f"{logs['loss']:.4g}"
            if "eval_loss" in logs:
                self.shown["val"] = f"{logs['eval_loss']:.4g}"
            self._postfix()

        def _postfix(self, **extra) -> None:
            self.shown.update(extra)
            if self.bar is not None:
                self.bar.set_postfix(self.shown, refresh=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return TrainingBar()
