"""PubMedQA-Ko (``ChuGyouk/PubMedQA-test-Ko``): the yes/no/maybe decision and the long answer.

The decision is read as lm-eval's ``pubmed_qa`` reads it: the summed log-probability of
each of ``yes``, ``no``, ``maybe`` as the reply to the question, the abstract and an
instruction to answer with one of them; the official metric is accuracy and macro-F1.
The long answer is generated greedily from the prompt medft trains on (question +
abstract) and compared with LONG_ANSWER per character.

The hub copy is the 500-item test set that ``data=pubmedqa_ko`` carves its own splits
from, so for a trained run every item its training or validation split holds is left
out (and counted as ``excluded_seen``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medft.config import EvalKind
from medft.data.records import clean_text, question_key
from medft.data.sources.pubmedqa import DECISIONS, format_user, read_hub, read_local
from medft.evals import scoring
from medft.evals.benchmark import FunctionBenchmark, use_chat_template
from medft.evals.generation import Prompter, batches, continuation_logprobs, generate_batch
from medft.modeling.generate import generation_kwargs
from medft.runtime.errors import DataError

DECISION_INSTRUCTION = "위 근거를 바탕으로 질문에 yes, no, maybe 중 하나로만 답하세요."


@dataclass
class Items:
    items: list[dict]
    excluded_seen: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _records(eval_cfg) -> list[tuple[str | None, dict]]:
    if eval_cfg.path:
        return read_local(Path(str(eval_cfg.path)).expanduser(), "eval.path")
    if eval_cfg.hub_id:
        return read_hub(eval_cfg.hub_id, eval_cfg.revision, "eval.hub_id")
    raise DataError("eval.path and eval.hub_id are both null; set eval.hub_id=ChuGyouk/PubMedQA-test-Ko or eval.path")


def seen_in_training(run_cfg) -> set[str]:
    """Question keys of the run's train and validation splits, when it trained on PubMedQA-Ko."""
    kinds = {str(s.kind) for s in run_cfg.data.sources.values()}
    if "pubmedqa_ko" not in kinds:
        return set()
    from medft.data.cache import prepare_data

    datasets, _ = prepare_data(run_cfg.data, progress=False)
    return {question_key(r) for split in ("train", "validation") for r in datasets[split]}


def load_items(eval_cfg, model_cfg=None, trained: bool = False) -> Items:
    """Items with a yes/no/maybe label, less those a trained model saw (``trained`` with its config)."""
    out = Items([])
    seen = seen_in_training(model_cfg) if trained and model_cfg is not None else set()
    for index, (pmid, raw) in enumerate(_records(eval_cfg)):
        decision = clean_text(raw.get("final_decision")).lower()
        if decision not in DECISIONS or not raw.get("QUESTION") or not raw.get("LONG_ANSWER"):
            reason = "final_decision_not_yes_no_maybe" if decision not in DECISIONS else "missing_text"
            out.skipped[reason] = out.skipped.get(reason, 0) + 1
            continue
        user = format_user(raw["QUESTION"], raw.get("CONTEXTS") or [])
        if question_key({"messages": [{"role": "user", "content": user}]}) in seen:
            out.excluded_seen += 1
            continue
        out.items.append(
            {
                "id": pmid or clean_text(raw.get("PMID") or raw.get("pubid")) or f"#{index}",
                "user": user,
                "decision": decision,
                "long_answer": clean_text(raw["LONG_ANSWER"]),
            }
        )
        if eval_cfg.limit is not None and len(out.items) >= eval_cfg.limit:
            break
    if not out.items:
        raise DataError(
            "no PubMedQA-Ko item left to score"
            + (f" ({out.excluded_seen} were in the run's training data)" if out.excluded_seen else "")
        )
    return out


def decide(loaded, prompter: Prompter, user: str) -> tuple[str, dict[str, float]]:
    """The decision with the highest log-probability as the reply."""
    context = prompter.render([{"role": "user", "content": f"{user}\n\n{DECISION_INSTRUCTION}"}])
    if prompter.chat:
        continuations = list(DECISIONS)
    else:
        context, continuations = context + "\n답:", [f" {d}" for d in DECISIONS]
    scores = dict(
        zip(DECISIONS, continuation_logprobs(loaded.model, loaded.tokenizer, context, continuations), strict=True)
    )
    return max(DECISIONS, key=scores.__getitem__), scores


def score(loaded, eval_cfg, data: Items, progress=None) -> dict:
    prompter = Prompter.for_model(loaded, use_chat_template(eval_cfg))
    gen_kwargs = generation_kwargs(
        loaded.cfg.model.generation, {"max_new_tokens": eval_cfg.max_new_tokens, "do_sample": False}
    )
    items = []
    for chunk in batches(data.items, eval_cfg.batch_size):
        texts = [prompter.render([{"role": "user", "content": item["user"]}]) for item in chunk]
        replies = generate_batch(loaded.model, loaded.tokenizer, texts, gen_kwargs)
        for item, reply in zip(chunk, replies, strict=True):
            predicted, logprobs = decide(loaded, prompter, item["user"])
            answer = prompter.finish(reply.text)
            items.append(
                {
                    "id": item["id"],
                    "target": item["decision"],
                    "prediction": predicted,
                    "correct": predicted == item["decision"],
                    "logprobs": logprobs,
                    "long_answer": answer,
                    "reference": item["long_answer"],
                    "rouge_l_char": scoring.rouge_l_char(answer, item["long_answer"]),
                    "f1_char": scoring.f1_char(answer, item["long_answer"]),
                }
            )
        if progress is not None:
            progress.update(len(chunk))
    truth, predicted = [i["target"] for i in items], [i["prediction"] for i in items]
    metrics = {
        "accuracy": scoring.accuracy(truth, predicted),
        "macro_f1": scoring.macro_f1(truth, predicted),
        "rouge_l_char": scoring.mean(i["rouge_l_char"] for i in items),
        "f1_char": scoring.mean(i["f1_char"] for i in items),
        "n": len(items),
        "excluded_seen": data.excluded_seen,
    }
    groups = {
        label: {
            "n": truth.count(label),
            "predicted": predicted.count(label),
            "recall": (sum(t == p == label for t, p in zip(truth, predicted, strict=True)) / truth.count(label))
            if truth.count(label)
            else None,
        }
        for label in DECISIONS
    }
    return {"metrics": metrics, "groups": groups, "items": items, "skipped": data.skipped}


def count(data: Items) -> int:
    return len(data.items)


BENCHMARK = FunctionBenchmark(EvalKind.pubmedqa_ko, load_items, score, count)
