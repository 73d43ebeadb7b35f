"""The README.md shipped with an exported model: what it is, how it was made, how it scored,
and what it must not be used for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medft.runs.rundir import RunDir

DISCLAIMER = (
    "이 모델은 의료 정보를 제공하는 연구용 모델이며 의사의 진단, 처방, 치료를 대신하지 않습니다. "
    "모델의 답변은 틀릴 수 있으므로 건강에 관한 결정은 반드시 의료 전문가와 상의하세요.\n\n"
    "This model gives general medical information for research. It does not replace diagnosis or "
    "treatment by a physician; its answers can be wrong, and every health decision must be confirmed "
    "by a medical professional. It is not a medical device."
)


MERGE_BASES = {"dequantized": "dequantized NF4 base weights it trained against", "original": "original base weights"}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows if v not in (None, "", [])]
    return "\n".join(lines)


def fidelity_line(export: dict | None) -> str | None:
    """How close the shipped weights are to the trained model, so a reader can trust (or doubt) the merge."""
    if not export:
        return None
    if export.get("merged"):
        into = MERGE_BASES.get(export["merge_base"], export["merge_base"])
        head = f"Merge fidelity: adapter merged into the {into}, saved in {export['dtype']}"
    else:
        head = f"Export fidelity: trained weights saved in {export['dtype']}"
    fidelity = export.get("fidelity")
    if not fidelity:
        return f"{head}; not measured (export.fidelity_rows=0)."
    return (
        f"{head}; max |logit difference| to the trained model ({export['trained_model']}) "
        f"{fidelity['max_logit_diff']:.4g} over {fidelity['tokens']} positions of {fidelity['rows']} "
        f"{fidelity['inputs']} row(s)."
    )


# The numbers a reader compares first, per benchmark kind; other kinds show every number.
HEADLINES = {
    "kormedmcqa": ("exact_match", "lenient_match", "no_answer_rate", "n"),
    "pubmedqa_ko": ("accuracy", "macro_f1", "n"),
    "heldout": ("loss", "perplexity", "rouge_l_char", "n"),
}


def final_results(run_dir: Path) -> dict[str, dict]:
    """``eval/<benchmark>.json`` by name; the ``<name>.step<N>.json`` scores taken during training are left out."""
    paths = RunDir(run_dir).final_eval_results()
    return {p.stem: result for p in paths if (result := _read_json(p)).get("metrics")}


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def benchmark_line(result: dict) -> str:
    """``exact_match 0.4120 · lenient_match 0.4630 · …``: the benchmark's headline numbers."""
    metrics = result["metrics"]
    keys = HEADLINES.get(result.get("kind"), tuple(metrics))
    return " · ".join(f"{k} {_number(metrics[k])}" for k in keys if isinstance(metrics.get(k), (int, float)))


def profession_table(result: dict) -> list[str]:
    """KorMedMCQA per profession, strict beside lenient, so format and knowledge read apart."""
    groups = result.get("groups") or {}
    if result.get("kind") != "kormedmcqa" or not groups:
        return []
    lines = [
        f"### {result.get('benchmark', 'kormedmcqa')} by profession",
        "",
        "Strict is lm-evaluation-harness' answer extraction and exact match, comparable with published "
        "scores; lenient also accepts answers such as `C번`, `C가 정답입니다` or `답은 3번`. The gap "
        "between them is what the answer format cost; no answer is the strict share with no letter found.",
        "",
        "| profession | n | strict | lenient | no answer |",
        "|---|---|---|---|---|",
    ]
    rows = [*groups.items(), ("all (size-weighted)", result["metrics"])]
    lines += [
        f"| {name} | {g.get('n')} | {_number(g.get('exact_match'))} | {_number(g.get('lenient_match'))} | "
        f"{_number(g.get('no_answer_rate'))} |"
        for name, g in rows
    ]
    return [*lines, ""]


def _provenance(run_dir: Path, export: dict | None) -> list[str]:
    """Paragraphs on which code ran the model and how faithful the export is; only those known."""
    model_code = _read_json(RunDir(run_dir).manifest).get("model_code")
    lines = [f"Model code: {model_code}" if model_code else None, fidelity_line(export)]
    return [part for line in lines if line for part in (line, "")]


def _front_matter(model, method, base: str, license_id: str) -> list[str]:
    return [
        "---",
        f"license: {json.dumps(license_id)}",
        f"base_model: {json.dumps(base)}",
        "language: [ko]",
        "pipeline_tag: text-generation",
        "tags: [medical, korean, medft, " + str(method.name) + "]",
        "---",
    ]


def _training_rows(cfg) -> list[tuple[str, Any]]:
    method, train = cfg.method, cfg.train
    lora = method.get("lora") or {}
    return [
        ("method", method.name),
        (
            "LoRA r / alpha / dropout",
            f"{lora.get('r')} / {lora.get('alpha')} / {lora.get('dropout')}" if lora else None,
        ),
        ("LoRA targets", lora.get("target_modules") or lora.get("target") if lora else None),
        ("4-bit base (NF4, double quant)", "yes" if method.get("quantization") else None),
        ("trainable blocks", method.get("trainable_layers")),
        ("epochs / max steps", f"{train.epochs} / {train.max_steps}"),
        ("batch x accumulation", f"{train.per_device_batch_size} x {train.gradient_accumulation_steps}"),
        ("learning rate / scheduler", f"{train.learning_rate} / {train.lr_scheduler}"),
        ("max length", train.max_length),
        ("seed", cfg.seed),
    ]


def _data_rows(report: dict) -> list[tuple[str, Any]]:
    sources = report.get("sources", {})
    rows = [
        (name, f"{s.get('kind')}: {s.get('kept')} records kept of {s.get('read')} read") for name, s in sources.items()
    ]
    rows.append(("splits", ", ".join(f"{k} {v}" for k, v in report.get("splits", {}).items())))
    return rows


def _result_rows(metrics: dict, evals: dict[str, dict]) -> list[tuple[str, Any]]:
    rows = [
        ("validation loss (step 0 → end)", f"{metrics.get('eval_loss_initial')} → {metrics.get('eval_loss')}"),
        ("validation perplexity", metrics.get("eval_perplexity")),
        ("train loss (last)", metrics.get("train_loss")),
    ]
    return rows + [(f"eval: {name}", benchmark_line(result)) for name, result in evals.items()]


USAGE = [
    "## Use",
    "",
    "```python",
    "from transformers import AutoModelForCausalLM, AutoTokenizer",
    'tok = AutoTokenizer.from_pretrained("<this folder>")',
    'model = AutoModelForCausalLM.from_pretrained("<this folder>")',
    'prompt = tok.apply_chat_template([{"role": "user", "content": "감기에 걸렸을 때 어떻게 하나요?"}],',
    "                                 tokenize=False, add_generation_prompt=True)",
    "```",
    "",
]


def render(run_dir: Path, cfg, merged: bool, dtype: str, export: dict | None = None) -> str:
    """Markdown with a YAML header the hub understands (license, base model, tags).

    ``export`` is what export.json holds (merge base, fidelity); None leaves those lines out."""
    model = cfg.model
    method = cfg.method
    folder = RunDir(run_dir)
    evals = final_results(run_dir)
    base = model.hub_id or model.path or f"medft tiny ({model.name})"
    license_id = model.license or "other"
    body = [
        f"# {cfg.name or model.name} — Korean medical QA fine-tune",
        "",
        f"Fine-tuned from `{base}`"
        + (f" (revision `{model.revision}`)" if model.revision else "")
        + f" with medft ({method.name}). "
        + ("LoRA adapters are merged into the base weights; weights" if merged else "Weights")
        + f" are safetensors in {dtype}.",
        "",
        *_provenance(run_dir, export),
        f"**Base model licence:** {license_id}. The base model's licence terms apply to this model.",
        "",
        "## Intended use",
        "",
        "Research on Korean medical question answering and health-information assistants under human "
        "supervision. Not for diagnosis, triage, prescribing or any use without a qualified clinician.",
        "",
        "## Medical disclaimer",
        "",
        DISCLAIMER,
        "",
        "## Training data",
        "",
        _table(_data_rows(_read_json(folder.data_report))),
        "",
        "## Training",
        "",
        _table(_training_rows(cfg)),
        "",
        "## Results",
        "",
        _table(_result_rows(_read_json(folder.metrics), evals)),
        "",
        *[line for result in evals.values() for line in profession_table(result)],
        *USAGE,
        f"The tokenizer carries the chat template used in training (`{model.chat_template}`); use it "
        "as is so the model sees what it was trained on.",
    ]
    return "\n".join([*_front_matter(model, method, base, license_id), "", *body]) + "\n"
