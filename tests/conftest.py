"""Shared fixtures: an isolated cache and W&B environment, the composed config, the tiny model,
the real-architecture stand-ins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SECRETS = ("WANDB_API_KEY", "WANDB_MODE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """No network, no user W&B settings, a private model cache for the whole session."""
    root = tmp_path_factory.mktemp("env")
    saved = {
        k: os.environ.get(k)
        for k in (
            *_SECRETS,
            "MEDFT_CACHE",
            "WANDB_DIR",
            "WANDB_CONFIG_DIR",
            "WANDB_CACHE_DIR",
            "WANDB_DATA_DIR",
            "HF_HUB_OFFLINE",
            "HF_DATASETS_OFFLINE",
            "TOKENIZERS_PARALLELISM",
        )
    }
    for key in _SECRETS:
        os.environ.pop(key, None)
    os.environ["MEDFT_CACHE"] = str(root / "medft-cache")
    for key in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        os.environ[key] = str(root / key.lower())
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def compose_config(overrides: list[str] | None = None):
    """Compose conf/train.yaml exactly as `python -m medft.train` does."""
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=list(overrides or []))


@pytest.fixture
def compose():
    return compose_config


@pytest.fixture(scope="session")
def tiny_source():
    from medft.modeling.models import resolve_source

    return resolve_source(compose_config().model)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_source):
    from medft.modeling.models import load_tokenizer

    return load_tokenizer(compose_config().model, tiny_source)


REPO = Path(__file__).resolve().parent.parent


def _standin(tmp_path_factory, build, *args):
    """Build one real-architecture stand-in (tests/standins.py) once per session."""
    for module in ("llama_models", "mistral_common", "tiktoken", "sentencepiece"):
        pytest.importorskip(module, reason="stand-ins need the test extras: pip install -e '.[test]'")
    return build(tmp_path_factory.mktemp("standins"), *args)


@pytest.fixture(scope="session")
def exaone_dir(tmp_path_factory):
    """EXAONE 3.5 7.8B layout (LG's config and keys, untied head)."""
    from standins import build_exaone

    return _standin(tmp_path_factory, build_exaone, False)


@pytest.fixture(scope="session")
def exaone_tied_dir(tmp_path_factory):
    """EXAONE 3.5 2.4B layout (tied embeddings, no lm_head key)."""
    from standins import build_exaone

    return _standin(tmp_path_factory, build_exaone, True)


@pytest.fixture(scope="session")
def llama31_dir(tmp_path_factory):
    """Llama 3.1 Instruct layout with the real Llama 3 tokenizer."""
    from standins import build_llama31

    return _standin(tmp_path_factory, build_llama31)


@pytest.fixture(scope="session")
def solar_dir(tmp_path_factory):
    """SOLAR 10.7B Instruct layout with the real SentencePiece tokenizer."""
    from standins import build_solar

    return _standin(tmp_path_factory, build_solar)


def pytest_collection_modifyitems(config, items):
    """`gpu` tests run where CUDA is present and are skipped, visibly, everywhere else."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def wear_template(tokenizer, name: str):
    """A copy of the tiny tokenizer dressed in one of medft's templates (it carries every
    template's special tokens), with that template's end-of-turn and BOS."""
    import copy

    from medft.text.templates import get_spec, load_template

    spec = get_spec(name)
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = load_template(spec.name)
    tok.eos_token = spec.end_of_turn
    if spec.renders_bos:
        tok.bos_token = spec.bos_token
    return tok, spec


def compose_evaluate(overrides: list[str]):
    """Compose conf/evaluate.yaml exactly as `python -m medft.evaluate` does."""
    from hydra import compose, initialize_config_dir

    import medft.cli.evaluate  # noqa: F401  (registers the schema and the job-folder resolver)
    from medft.config import CONF_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("evaluate", overrides=list(overrides))
