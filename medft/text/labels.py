"""Tokenize conversations with the model's chat template and supervise assistant tokens only.

Masks come from the template itself: for each assistant turn, render the conversation
up to the turn with the generation prompt, and through the turn. The characters in
between, up to and including the end-of-turn token, are the turn's target. This works
for any template, including those without ``{% generation %}`` markers (EXAONE 3.5,
SOLAR), where TRL's ``assistant_only_loss`` cannot be used.

The rendered text is tokenized once, with the leading BOS exactly as the model's own
usage gives it (``leading_ids_for``: never doubled, never lost), and a token is supervised
when its character span lies inside a target span.
"""

from __future__ import annotations

from dataclasses import dataclass

from medft.text.templates import TemplateSpec

IGNORE_INDEX = -100


class RowError(ValueError):
    """A conversation that cannot be turned into a training row (counted, never dropped silently)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class RenderedConversation:
    text: str
    # [start, end) character spans that are trained on.
    targets: list[tuple[int, int]]


def _render(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_with_targets(tokenizer, spec: TemplateSpec, messages: list[dict]) -> RenderedConversation:
    if not messages or messages[-1]["role"] != "assistant":
        raise RowError("no_final_assistant_turn", "a training conversation must end with an assistant turn")
    full = _render(tokenizer, messages, add_generation_prompt=False)
    out: list[str] = []
    out_len = 0
    cursor = 0  # position in `full` copied so far
    targets: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if not message["content"].strip():
            raise RowError("empty_assistant_turn", f"turn {i} has no content")
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not (through.startswith(prompt) and full.startswith(through)):
            raise RowError("template_not_prefix_preserving", f"turn {i} renders differently in context")
        turn = through[len(prompt) :]
        start = out_len + (len(prompt) - cursor)
        piece = full[cursor : len(through)] + spec.assistant_suffix
        turn += spec.assistant_suffix
        eot = turn.rfind(spec.end_of_turn)
        if eot < 0:
            raise RowError("end_of_turn_missing", f"turn {i} does not end with {spec.end_of_turn}")
        out.append(piece)
        out_len += len(piece)
        cursor = len(through)
        end = start + eot + len(spec.end_of_turn)
        targets.append((start, end))
    out.append(full[cursor:])
    return RenderedConversation("".join(out), targets)


def leading_special_ids(tokenizer) -> list[int]:
    """The ids the tokenizer's defaults put before any text: ``[<s>]`` for SOLAR's,
    ``[<|begin_of_text|>]`` for Llama 3's, none for EXAONE's."""
    probe = "가"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    default = tokenizer(probe)["input_ids"]
    for start in range(len(default) - len(plain) + 1):
        if default[start : start + len(plain)] == plain:
            return list(default[:start])
    return []


def leading_ids_for(tokenizer, ids: list[int], lead: list[int] | None = None) -> list[int]:
    """What goes before a rendered text's ids (tokenized without special tokens) so that it
    starts exactly as in the model's own usage, ``tokenizer(apply_chat_template(..., tokenize=False))``.

    The rule: the template's own BOS when the template renders one (Llama 3.1: exactly one
    ``<|begin_of_text|>``, the tokenizer's is not added again), otherwise whatever the
    tokenizer's defaults put before the text (SOLAR: ``<s>``; EXAONE: nothing). ``lead``: the
    tokenizer's ``leading_special_ids``, when the caller has it already (one per split, not per row).
    """
    lead = leading_special_ids(tokenizer) if lead is None else lead
    rendered_bos = bool(ids) and ids[0] == tokenizer.bos_token_id
    return [] if rendered_bos or ids[: len(lead)] == lead else lead


def encode_prompt(tokenizer, text: str) -> list[int]:
    """A rendered prompt's ids as the model's own usage gives them (see ``leading_ids_for``)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return leading_ids_for(tokenizer, ids) + ids


def encode_prompts(tokenizer, texts: list[str]):
    """``encode_prompt`` for a batch, padded on the tokenizer's padding side, as PyTorch tensors."""
    return tokenizer.pad({"input_ids": [encode_prompt(tokenizer, t) for t in texts]}, return_tensors="pt")


def tokenize_rendered(tokenizer, rendered: RenderedConversation, lead: list[int] | None = None) -> dict:
    """input_ids + labels; the leading BOS the model's usage adds (if any) is not trained."""
    enc = tokenizer(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    lead = leading_ids_for(tokenizer, enc["input_ids"], lead)
    labels = [IGNORE_INDEX] * len(lead)
    spans = rendered.targets
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        inside = any(s <= start and end <= e and end > start for s, e in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return {"input_ids": lead + list(enc["input_ids"]), "labels": labels}


def _with_user_content(messages: list[dict], index: int, content: str) -> list[dict]:
    shortened = [dict(m) for m in messages]
    shortened[index]["content"] = content
    return shortened


def build_example(
    tokenizer, spec: TemplateSpec, messages: list[dict], max_length: int, lead: list[int] | None = None
) -> dict:
    """input_ids + labels for one conversation; when it is too long, the longest user message
    (the context, e.g. PubMedQA abstracts) is cut from its end. Answers are never cut."""
    current = [{"role": m["role"], "content": m["content"]} for m in messages]
    lead = leading_special_ids(tokenizer) if lead is None else lead
    example = tokenize_rendered(tokenizer, render_with_targets(tokenizer, spec, current), lead)
    truncated = False
    if len(example["input_ids"]) > max_length:
        users = [i for i, m in enumerate(current) if m["role"] == "user"]
        if not users:
            raise RowError("too_long", f"{len(example['input_ids'])} tokens > train.max_length={max_length}")
        index = max(users, key=lambda j: len(current[j]["content"]))
        content = current[index]["content"]
        best = None
        low, high = 0, len(content) - 1
        while low <= high:  # longest prefix of the context that fits
            mid = (low + high) // 2
            trial = _with_user_content(current, index, content[:mid].rstrip() + " …")
            candidate = tokenize_rendered(tokenizer, render_with_targets(tokenizer, spec, trial), lead)
            if len(candidate["input_ids"]) <= max_length:
                best, low = candidate, mid + 1
            else:
                high = mid - 1
        if best is None:
            raise RowError("too_long", f"the answer alone exceeds train.max_length={max_length} (row not trained on)")
        example, truncated = best, True
    supervised = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
    if supervised == 0:
        raise RowError("no_supervised_tokens", "no assistant token is trained")
    example["num_supervised"] = supervised
    example["truncated"] = truncated
    return example


def _tokenize_rows(tokenizer, spec: TemplateSpec, max_length: int, rows) -> tuple[dict, dict]:
    kept = {"id": [], "input_ids": [], "labels": []}
    stats = {"rows": len(rows), "kept": 0, "truncated": 0, "supervised_tokens": 0, "tokens": 0, "skipped": {}}
    lead = leading_special_ids(tokenizer)  # once per chunk: it tokenizes a probe text
    for row in rows:
        try:
            example = build_example(tokenizer, spec, row["messages"], max_length, lead)
        except RowError as err:
            entry = stats["skipped"].setdefault(err.reason, {"count": 0, "examples": []})
            entry["count"] += 1
            if len(entry["examples"]) < 3:
                entry["examples"].append(row["id"])
            continue
        kept["id"].append(row["id"])
        kept["input_ids"].append(example["input_ids"])
        kept["labels"].append(example["labels"])
        stats["kept"] += 1
        stats["truncated"] += int(example["truncated"])
        stats["supervised_tokens"] += example["num_supervised"]
        stats["tokens"] += len(example["input_ids"])
    return kept, stats


def _merge(parts: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """Chunks in their original order: the same rows, ids and counts as one pass."""
    kept = {"id": [], "input_ids": [], "labels": []}
    stats = {"rows": 0, "kept": 0, "truncated": 0, "supervised_tokens": 0, "tokens": 0, "skipped": {}}
    for part_kept, part_stats in parts:
        for key in kept:
            kept[key].extend(part_kept[key])
        for key in ("rows", "kept", "truncated", "supervised_tokens", "tokens"):
            stats[key] += part_stats[key]
        for reason, entry in part_stats["skipped"].items():
            merged = stats["skipped"].setdefault(reason, {"count": 0, "examples": []})
            merged["count"] += entry["count"]
            merged["examples"] = (merged["examples"] + entry["examples"])[:3]
    return kept, stats


_WORKER: tuple | None = None  # (tokenizer, spec, max_length) inherited by forked workers


def _tokenize_chunk(bounds: tuple[int, int]) -> tuple[dict, dict]:
    tokenizer, spec, max_length, rows = _WORKER
    return _tokenize_rows(tokenizer, spec, max_length, rows.select(range(*bounds)))


PARALLEL_MIN_ROWS = 20_000
CHUNK_ROWS = 2_000


def tokenize_splits(
    datasets, tokenizer, spec: TemplateSpec, max_length: int, progress: bool = True, num_proc: int | None = None
):
    """Tokenize every split; rows that cannot be trained on are counted by reason, not lost.

    Large splits are tokenized by forked worker processes in ordered chunks (the tokenizer
    is inherited, not pickled); ``num_proc=None`` uses every core from PARALLEL_MIN_ROWS rows.
    Returns the tokenized DatasetDict (columns ``input_ids``, ``labels``, ``id``) and a
    report ``{split: {rows, kept, truncated, supervised_tokens, skipped: {reason: {count, examples}}}}``.
    """
    import multiprocessing
    import os

    from datasets import Dataset, DatasetDict
    from tqdm.auto import tqdm

    global _WORKER
    out, report = {}, {}
    for split, rows in datasets.items():
        procs = num_proc if num_proc is not None else (os.cpu_count() or 1) if len(rows) >= PARALLEL_MIN_ROWS else 1
        chunks = [(i, min(i + CHUNK_ROWS, len(rows))) for i in range(0, len(rows), CHUNK_ROWS)]
        bar = tqdm(total=len(rows), desc=f"tokenizing {split}", disable=not progress, leave=False)
        parts = []
        if procs > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
            _WORKER = (tokenizer, spec, max_length, rows)
            try:
                with multiprocessing.get_context("fork").Pool(procs) as pool:
                    for part in pool.imap(_tokenize_chunk, chunks):
                        parts.append(part)
                        bar.update(part[1]["rows"])
            finally:
                _WORKER = None
        else:
            for start, stop in chunks:
                parts.append(_tokenize_rows(tokenizer, spec, max_length, rows.select(range(start, stop))))
                bar.update(stop - start)
        bar.close()
        kept, stats = _merge(parts) if parts else _tokenize_rows(tokenizer, spec, max_length, [])
        out[split] = Dataset.from_dict(kept)
        report[split] = stats
    return DatasetDict(out), report
