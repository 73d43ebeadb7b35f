"""The run's own test split: loss/perplexity on the answers, and the answers it generates.

Loss is teacher-forced over the tokens training supervises (assistant turns and their
end-of-turn, built by ``medft.text.labels.build_example``), averaged per token: on
``eval.split=validation`` it is the validation loss training reports. Generation
answers each conversation's last user turn greedily, one row at a time so latency and
tokens/s are per answer, and is compared with the reference answer per character.
"""

from __future__ import annotations

import math

from medft.config import EvalKind
from medft.evals import scoring
from medft.evals.benchmark import FunctionBenchmark
from medft.evals.generation import Prompter, batches, generate_batch
from medft.modeling.generate import generation_kwargs
from medft.runtime.errors import ConfigError, DataError
from medft.text.labels import IGNORE_INDEX, RowError, build_example
from medft.text.templates import get_spec


def load_items(eval_cfg, model_cfg, trained: bool = False) -> list[dict]:
    """The records of ``eval.split`` (first ``eval.limit``) of the model config's data (a run's: what it trained on)."""
    from medft.data.cache import prepare_data

    data_cfg = model_cfg.data
    datasets, _ = prepare_data(data_cfg, progress=False)
    rows = datasets[eval_cfg.split].to_list()
    rows = [r for r in rows if r["messages"] and r["messages"][-1]["role"] == "assistant"]
    if eval_cfg.limit is not None:
        rows = interleave_sources(rows)[: eval_cfg.limit]
    if not rows:
        raise DataError(f"the {eval_cfg.split} split of data={data_cfg.name} is empty; nothing to evaluate")
    return rows


def interleave_sources(rows: list[dict]) -> list[dict]:
    """Rows taken from each source in turn, so a quick run (``eval.limit``) sees every source of a mixture."""
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault((row.get("meta") or {}).get("source") or "", []).append(row)
    queues = list(by_source.values())
    return [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]


def token_losses(model, pad_id: int, examples: list[dict]) -> list[tuple[float, int]]:
    """(summed NLL, supervised tokens) per example, one forward pass for the batch."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e in examples], device=device)
    labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in examples], device=device)
    mask = torch.tensor(
        [[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in examples], device=device
    )
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none")
    counts = (labels[:, 1:] != IGNORE_INDEX).sum(dim=1)
    return [(float(s), int(c)) for s, c in zip(nll.sum(dim=1), counts, strict=True)]


def teacher_forced_loss(loaded, rows: list[dict], batch_size: int) -> dict:
    """Summed NLL over every supervised token of ``rows`` divided by their number: the
    validation loss training reports (``medft.training.eval_loss``), here on any split."""
    tokenizer = loaded.tokenizer
    spec = get_spec(loaded.cfg.model.chat_template)
    max_length = int(loaded.cfg.train.max_length)
    examples, skipped = [], {}
    for row in rows:
        try:
            examples.append(build_example(tokenizer, spec, row["messages"], max_length))
        except RowError as err:
            skipped[err.reason] = skipped.get(err.reason, 0) + 1
    total_nll, total_tokens = 0.0, 0
    for chunk in batches(examples, batch_size):
        for nll, tokens in token_losses(loaded.model, tokenizer.pad_token_id, chunk):
            total_nll, total_tokens = total_nll + nll, total_tokens + tokens
    loss = total_nll / total_tokens if total_tokens else None
    return {"loss": loss, "supervised_tokens": total_tokens, "loss_rows": len(examples), "skipped": skipped}


def score(loaded, eval_cfg, rows: list[dict], progress=None) -> dict:
    tokenizer, model = loaded.tokenizer, loaded.model
    teacher = teacher_forced_loss(loaded, rows, eval_cfg.batch_size)
    prompter = Prompter.for_model(loaded, chat=True)
    gen_kwargs = generation_kwargs(
        loaded.cfg.model.generation, {"max_new_tokens": eval_cfg.max_new_tokens, "do_sample": False}
    )
    items = []
    for row in rows:
        (reply,) = generate_batch(model, tokenizer, [prompter.render(row["messages"][:-1])], gen_kwargs)
        reference = row["messages"][-1]["content"]
        items.append(
            {
                "id": row["id"],
                "source": (row.get("meta") or {}).get("source"),
                "answer": reply.text,
                "reference": reference,
                "rouge_l_char": scoring.rouge_l_char(reply.text, reference),
                "f1_char": scoring.f1_char(reply.text, reference),
                "latency_s": reply.seconds,
                "new_tokens": reply.new_tokens,
                "tokens_per_s": reply.tokens_per_second,
            }
        )
        if progress is not None:
            progress.update(1)

    loss = teacher["loss"]
    metrics = {
        "loss": loss,
        "perplexity": math.exp(loss) if loss is not None else None,
        "supervised_tokens": teacher["supervised_tokens"],
        "loss_rows": teacher["loss_rows"],
        "rouge_l_char": scoring.mean(i["rouge_l_char"] for i in items),
        "f1_char": scoring.mean(i["f1_char"] for i in items),
        "n": len(items),
    }
    for key in ("latency_s", "new_tokens", "tokens_per_s"):
        metrics[f"{key}_mean"] = scoring.mean(i[key] for i in items)
        metrics[f"{key}_median"] = scoring.median(i[key] for i in items)
    groups = _by_source(items)
    return {"metrics": metrics, "groups": groups, "items": items, "skipped": teacher["skipped"]}


def _by_source(items: list[dict]) -> dict:
    """Generation quality per data source: a mixture's average can hide one source failing."""
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(item["source"] or "-", []).append(item)
    return {
        name: {
            "n": len(group),
            "rouge_l_char": scoring.mean(i["rouge_l_char"] for i in group),
            "f1_char": scoring.mean(i["f1_char"] for i in group),
        }
        for name, group in sorted(groups.items())
    }


def count(rows: list[dict]) -> int:
    return len(rows)


SPLITS = ("train", "validation", "test")


def check(eval_cfg) -> None:
    if eval_cfg.split not in SPLITS:
        raise ConfigError(f"eval.split={eval_cfg.split} must be one of {', '.join(SPLITS)} for eval=heldout")


BENCHMARK = FunctionBenchmark(EvalKind.heldout, load_items, score, count, check)
