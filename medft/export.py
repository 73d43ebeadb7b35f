"""python -m medft.export run=<run dir> [merge=true] [push_to_hub=<repo>] [export.dtype=bfloat16]

Merges a run's LoRA adapter into its base (a 4-bit base is reloaded in 16 bit first, since
4-bit weights cannot absorb an adapter), saves safetensors shards, the tokenizer with the
training chat template and a model card. The hub token is read from HF_TOKEN and is never
written anywhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medft.cli import check_overrides, fail, user_errors
from medft.errors import ConfigError

SHORTHANDS = {"merge": "export.merge", "push_to_hub": "export.push_to_hub", "output": "export.output"}


def expand_shorthands(argv: list[str]) -> list[str]:
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        out.append(f"{SHORTHANDS[key]}={value}" if sep and key in SHORTHANDS else arg)
    return out


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from medft.config import CONF_DIR, register_schemas

    register_schemas()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=overrides)


def export_run(run_dir: Path, export_cfg) -> Path:
    """Write the shippable folder and return it."""
    import torch  # noqa: F401  (dtype lookups below)
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medft import model_card, models
    from medft.runs import load_run_config, run_artifact

    cfg = load_run_config(run_dir)
    artifact, is_adapter = run_artifact(run_dir)
    dtype = getattr(export_cfg.dtype, "value", export_cfg.dtype)
    out = Path(export_cfg.output) if export_cfg.output else run_dir / "merged"
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    if is_adapter and not export_cfg.merge:
        raise ConfigError("merge=false on a LoRA run: the adapter is already in adapter/; use merge=true to ship a model")
    device = "cpu"  # merging is a one-off; CPU memory is the larger pool
    base_spec = OmegaConf.merge(cfg.model, {"dtype": dtype})
    if is_adapter:
        from peft import PeftModel

        sixteen_bit = OmegaConf.create({"name": "full"})  # no quantization: merge into real weights
        base = models.load_model(base_spec, sixteen_bit, device)
        model = PeftModel.from_pretrained(base, str(artifact)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(artifact), dtype=models.torch_dtype(dtype, device))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=export_cfg.max_shard_size)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(model_card.render(run_dir, cfg, merged=is_adapter, dtype=dtype), encoding="utf-8")
    return out


def push(folder: Path, repo: str, private: bool) -> str:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise ConfigError(f"push_to_hub={repo} needs a token in the HF_TOKEN environment variable")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="Upload model exported by medft")
    except Exception as err:  # network, permissions: the user's to fix, in one line
        raise ConfigError(f"push_to_hub={repo} failed ({type(err).__name__}: {str(err).splitlines()[0][:160]})") from err
    return f"https://huggingface.co/{repo}"


def main(argv: list[str]) -> None:
    overrides = expand_shorthands(argv)
    check_overrides(overrides)
    cfg = _compose(overrides)
    if not cfg.run:
        fail("say which run to export: python -m medft.export run=outputs/runs/<run>")
    run_dir = Path(cfg.run)
    if not run_dir.is_dir():
        fail(f"run={cfg.run} is not a folder")
    folder = export_run(run_dir, cfg.export)
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    print(f"medft: exported {folder} ({len(shards)} safetensors shard{'s' if len(shards) != 1 else ''}, model card README.md)")
    if cfg.export.push_to_hub:
        print(f"medft: uploaded to {push(folder, cfg.export.push_to_hub, cfg.export.private)}")


if __name__ == "__main__":
    with user_errors():
        main(sys.argv[1:])
