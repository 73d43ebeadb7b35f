"""A trained run as one self-contained model folder, and how close it is to the trained model.

An adapter is merged into its base (a QLoRA adapter into the dequantized NF4 weights it trained
against unless export.merge_base=original); weights go out as safetensors shards with the
tokenizer, the training chat template, a model card and export.json, which records the largest
logit difference to the trained model. The hub token comes from HF_TOKEN and is written nowhere.
The command around it is medft.cli.export.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir
from medft.runtime.errors import ConfigError

log = logging.getLogger("medft")

EXPORT_JSON = RunDir.EXPORT


@dataclass
class Exported:
    folder: Path
    info: dict[str, Any]  # what export.json holds


def _measure_reference(run_dir: Path, cfg, tokenizer, rows: int):
    """The held-out inputs and the trained model's logits on them, before any merged model loads."""
    from medft.runs import merge

    if rows == 0:
        return [], "", None
    inputs, name = merge.fidelity_inputs(cfg, tokenizer, rows)
    log.info("export: trained model's logits on %d %s row(s)", len(inputs), name)
    return inputs, name, merge.trained_logits(run_dir, inputs)


def _load_exported(cfg, artifact: Path, is_adapter: bool, merge_base, dtype: str):
    """The model to ship: an adapter merged into its base, or a freeze/full run's weights, in ``dtype``."""
    from transformers import AutoModelForCausalLM

    from medft.modeling import models
    from medft.runs import merge

    if not is_adapter:
        log.info("export: loading the trained weights in %s", dtype)
        return AutoModelForCausalLM.from_pretrained(str(artifact), dtype=models.torch_dtype(dtype, "cpu"))
    log.info("export: merging the adapter into the %s base weights in %s", merge_base.value, dtype)
    return merge.merged_model(cfg, artifact, merge_base, dtype)


def _fidelity(model, inputs: list, inputs_name: str, reference):
    """How far the exported model's logits are from the trained model's; None when not measured."""
    from medft.runs import merge

    if reference is None:
        return None
    diff = merge.max_logit_diff(reference, merge.logits(model, inputs))
    log.info("export: max |logit difference| to the trained model %.4g", diff)
    return merge.Fidelity(round(diff, 6), len(inputs), sum(map(len, inputs)), inputs_name)


def _write(out: Path, model, tokenizer, info: dict, run_dir: Path, cfg, max_shard_size: str) -> None:
    from medft.modeling.models import keep_checkpoint_identity
    from medft.runs import model_card
    from medft.runs.rundir import write_json

    log.info("export: writing %s", out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    keep_checkpoint_identity(out, cfg.model)
    folder = RunDir(out)
    write_json(folder.export_info, info)
    card = model_card.render(run_dir, cfg, merged=info["merged"], dtype=info["dtype"], export=info)
    folder.readme.write_text(card, encoding="utf-8")


def export_run(run_dir: Path, export_cfg) -> Exported:
    """Write the shippable folder; merging is a one-off, so it runs on CPU, the larger memory pool."""
    from transformers import AutoTokenizer

    from medft.runs import merge
    from medft.runs.loading import load_run_config, run_artifact

    cfg = load_run_config(run_dir)
    artifact, is_adapter = run_artifact(run_dir)
    if is_adapter and not export_cfg.merge:
        raise ConfigError(
            "merge=false on a LoRA run: the adapter is already in adapter/; use merge=true to ship a model"
        )
    if export_cfg.fidelity_rows < 0:
        raise ConfigError(f"export.fidelity_rows={export_cfg.fidelity_rows}: give a row count, or 0 to skip the check")
    dtype = export_cfg.dtype
    out = Path(export_cfg.output) if export_cfg.output else RunDir(run_dir).merged
    log.info("export: %s (%s) to %s", run_dir, cfg.method.name, out)
    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    inputs, inputs_name, reference = _measure_reference(run_dir, cfg, tokenizer, int(export_cfg.fidelity_rows))
    merge_base = merge.effective_merge_base(cfg, export_cfg.merge_base) if is_adapter else None
    model = _load_exported(cfg, artifact, is_adapter, merge_base, dtype)
    fidelity = _fidelity(model, inputs, inputs_name, reference)
    info = {
        "run": str(run_dir),
        "method": str(cfg.method.name),
        "dtype": dtype,
        "merged": is_adapter,
        "merge_base": merge_base.value if merge_base else None,
        "trained_model": merge.trained_description(cfg, is_adapter),
        "fidelity": asdict(fidelity) if fidelity else None,
    }
    _write(out, model, tokenizer, info, run_dir, cfg, export_cfg.max_shard_size)
    return Exported(out, info)


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
        raise ConfigError(
            f"push_to_hub={repo} failed ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        ) from err
    return f"https://huggingface.co/{repo}"


def summary(exported: Exported) -> str:
    """The one stdout line: where the model went and how close it is to the trained one."""
    shards = sorted(p.name for p in exported.folder.glob("*.safetensors"))
    line = (
        f"medft: exported {exported.folder} ({len(shards)} safetensors shard{'s' if len(shards) != 1 else ''}, "
        f"model card {RunDir.README}, {EXPORT_JSON})"
    )
    fidelity, base = exported.info["fidelity"], exported.info["merge_base"]
    into = f"; merged into the {base} base weights" if base else ""
    if fidelity:
        return f"{line}{into}; max |logit difference| to the trained model {fidelity['max_logit_diff']:.4g}"
    return line + into
