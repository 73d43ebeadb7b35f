"""KorMedMCQA (``sean0042/KorMedMCQA``): Korean licensing-exam multiple choice, scored as lm-eval does.

Prompt ``{question}\\nA. {A}\\n...\\nE. {E}\\n정답：`` (full-width colon), the first
``eval.fewshot`` rows of the ``fewshot`` split as examples, greedy generation, the
paper's answer-extraction cascade, exact match; per subset and averaged weighted by
subset size (lm-eval's ``kormedmcqa`` group is doctor, nurse and pharm).

That strict score is the headline and stays comparable with published numbers, but it
reads ``C번`` or ``C가 정답입니다`` as no answer. So every answer is also read leniently
(``medft.evals.scoring.extract_choice_lenient``), and the result carries the strict
no-answer rate and both accuracies per profession: a low score from format shows as a
gap between strict and lenient, a low score from knowledge as both low.

Few-shot examples follow lm-eval's ``fewshot_config``: with ``eval.use_chat_template=false``
the text is ``<prompt> <letter>\\n\\n`` per example, then the question's prompt; with the
chat template (the default, the format a medft run is trained on) each example is a
user turn answered by an assistant turn holding its letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medft.config import EvalKind
from medft.evals import scoring
from medft.evals.benchmark import FunctionBenchmark, use_chat_template
from medft.evals.generation import Prompter, batches, generate_batch
from medft.modeling.generate import generation_kwargs
from medft.runtime.errors import ConfigError, DataError

FEATURES = ("subject", "year", "period", "q_number", "question", "A", "B", "C", "D", "E", "answer", "cot")
REQUIRED = ("question", "A", "B", "C", "D", "E", "answer")
FEWSHOT_SPLIT = "fewshot"
_EXTENSIONS = (".parquet", ".jsonl", ".json", ".csv")
SUBSETS = ("doctor", "nurse", "pharm", "dentist")
SCORES = ("exact_match", "lenient_match", "no_answer_rate")


@dataclass
class Subset:
    name: str
    items: list[dict]
    shots: list[dict]


def prompt_text(row: dict) -> str:
    choices = "".join(f"{letter}. {row[letter]}\n" for letter in "ABCDE")
    return f"{str(row['question']).strip()}\n{choices}정답："


def messages_for(row: dict, shots: list[dict]) -> list[dict]:
    """Few-shot examples as earlier turns, each answered by its letter, then the question."""
    messages = []
    for shot in shots:
        messages.append({"role": "user", "content": prompt_text(shot)})
        messages.append({"role": "assistant", "content": scoring.answer_letter(shot["answer"])})
    messages.append({"role": "user", "content": prompt_text(row)})
    return messages


# --------------------------------------------------------------------------- data
def _split_file(folder: Path, split: str) -> Path | None:
    """``<split>.<ext>`` or hub-style ``<split>-00000-of-00001.<ext>`` in a subset folder."""
    for ext in _EXTENSIONS:
        for pattern in (f"{split}{ext}", f"{split}-*{ext}"):
            found = sorted(folder.glob(pattern))
            if found:
                return found[0]
    return None


def _read_file(path: Path) -> list[dict]:
    import json

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        import csv

        with path.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise DataError(f"{path} must hold a JSON list of KorMedMCQA rows")
    return data


def read_local(root: Path, subset: str, split: str) -> list[dict]:
    folder = root / subset
    if not folder.is_dir():
        raise DataError(
            f"eval.path={root} has no {subset}/ folder; expected <path>/<subset>/<split>.parquet|jsonl|json|csv"
        )
    path = _split_file(folder, split)
    if path is None:
        raise DataError(f"eval.path={root}: no {split} file in {folder} (looked for {split}.parquet|jsonl|json|csv)")
    try:
        return _read_file(path)
    except (OSError, ValueError) as err:
        raise DataError(
            f"eval.path: cannot read {path} ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None


def read_hub(hub_id: str, revision: str | None, subset: str, split: str) -> list[dict]:
    import datasets

    try:
        return datasets.load_dataset(hub_id, subset, revision=revision, split=split).to_list()
    except Exception as err:  # offline, missing revision, auth: all the user's to fix
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise DataError(
            f"could not load {hub_id} ({subset}, {split}) from the hub: {type(err).__name__}: {first}; "
            f"without network access set eval.path to a local copy (<path>/<subset>/<split>.parquet)"
        ) from None


def validate_rows(rows: list[dict], where: str) -> list[dict]:
    """Rows with every required feature and an answer of 1-5; anything else is the file's fault."""
    out = []
    for index, row in enumerate(rows):
        missing = [k for k in REQUIRED if row.get(k) in (None, "")]
        if missing:
            raise DataError(
                f"{where} row {index} lacks {', '.join(missing)}; KorMedMCQA rows need {', '.join(REQUIRED)}"
            )
        try:
            answer = int(row["answer"])
        except (TypeError, ValueError):
            answer = 0
        if not 1 <= answer <= 5:
            raise DataError(f"{where} row {index}: answer={row['answer']!r} must be 1-5 (A-E)")
        out.append({**{k: row.get(k) for k in FEATURES}, "answer": answer})
    return out


def _read(eval_cfg, subset: str, split: str) -> list[dict]:
    if eval_cfg.path:
        rows = read_local(Path(str(eval_cfg.path)).expanduser(), subset, split)
    elif eval_cfg.hub_id:
        rows = read_hub(eval_cfg.hub_id, eval_cfg.revision, subset, split)
    else:
        raise DataError("eval.path and eval.hub_id are both null; set eval.hub_id=sean0042/KorMedMCQA or eval.path")
    return validate_rows(rows, f"KorMedMCQA {subset}/{split}")


def load_items(eval_cfg, model_cfg=None, trained: bool = False) -> list[Subset]:
    """Every configured subset's scored rows (first ``eval.limit``) and few-shot rows."""
    subsets = []
    for subset in eval_cfg.subsets:
        items = _read(eval_cfg, subset, eval_cfg.split)
        if eval_cfg.limit is not None:
            items = items[: eval_cfg.limit]
        shots = _read(eval_cfg, subset, FEWSHOT_SPLIT)[: eval_cfg.fewshot] if eval_cfg.fewshot else []
        if len(shots) < eval_cfg.fewshot:
            raise DataError(f"eval.fewshot={eval_cfg.fewshot} but {subset}/{FEWSHOT_SPLIT} has {len(shots)} rows")
        if not items:
            raise DataError(f"KorMedMCQA {subset}/{eval_cfg.split} has no rows")
        subsets.append(Subset(subset, items, shots))
    return subsets


# --------------------------------------------------------------------------- scoring
def score(loaded, eval_cfg, subsets: list[Subset], progress=None) -> dict:
    prompter = Prompter.for_model(loaded, use_chat_template(eval_cfg))
    gen_kwargs = generation_kwargs(
        loaded.cfg.model.generation, {"max_new_tokens": eval_cfg.max_new_tokens, "do_sample": False}
    )
    items = []
    for subset in subsets:
        for chunk in batches(subset.items, eval_cfg.batch_size):
            texts = [prompter.render(messages_for(row, subset.shots)) for row in chunk]
            replies = generate_batch(loaded.model, loaded.tokenizer, texts, gen_kwargs)
            items += [
                score_item(subset.name, row, r.text, prompter.finish(r.text))
                for row, r in zip(chunk, replies, strict=True)
            ]
            if progress is not None:
                progress.update(len(chunk))
    groups = {subset.name: summarize([i for i in items if i["subset"] == subset.name]) for subset in subsets}
    return {"metrics": headline(groups), "groups": groups, "items": items}


def score_item(subset: str, row: dict, reply: str, output: str) -> dict:
    """One answer read twice: lm-eval's strict cascade, and the lenient reading beside it."""
    target = scoring.answer_letter(row["answer"])
    strict, lenient = scoring.extract_choice(output), scoring.extract_choice_lenient(output)
    return {
        "subset": subset,
        "year": row["year"],
        "period": row["period"],
        "q_number": row["q_number"],
        "target": target,
        "prediction": strict,
        "correct": scoring.exact_match(strict, target),
        "prediction_lenient": lenient,
        "correct_lenient": scoring.exact_match(lenient, target),
        "output": reply,
    }


def summarize(items: list[dict]) -> dict:
    """One profession: strict (lm-eval) and lenient accuracy, and how often strict found no answer."""
    n = len(items)
    return {
        "n": n,
        "exact_match": sum(i["correct"] for i in items) / n,
        "lenient_match": sum(i["correct_lenient"] for i in items) / n,
        "no_answer_rate": sum(not i["prediction"] for i in items) / n,
    }


def headline(groups: dict[str, dict]) -> dict:
    """Every group metric weighted by subset size, as lm-eval's group score (weight_by_size: true),
    then strict and lenient accuracy per profession."""
    total = sum(g["n"] for g in groups.values())
    metrics = {key: sum(g[key] * g["n"] for g in groups.values()) / total for key in SCORES}
    metrics["n"] = total
    for key in ("exact_match", "lenient_match"):
        metrics.update({f"{key}_{name}": g[key] for name, g in groups.items()})
    return metrics


def count(subsets: list[Subset]) -> int:
    return sum(len(s.items) for s in subsets)


def check(eval_cfg) -> None:
    if not eval_cfg.subsets:
        raise ConfigError(f"eval.subsets is empty; choose from: {', '.join(SUBSETS)}")
    unknown = [s for s in eval_cfg.subsets if s not in SUBSETS]
    if unknown:
        raise ConfigError(f"eval.subsets: {unknown[0]} is not a KorMedMCQA subset; choose from: {', '.join(SUBSETS)}")


BENCHMARK = FunctionBenchmark(EvalKind.kormedmcqa, load_items, score, count, check, fewshot=True)
