"""Preflight audit of the training signal, run after the trainer is built and before step 0.

Every check here guards against a bug that leaves the loss curve looking healthy while
the model learns the wrong thing: rows that train nothing, an end-of-turn token that is
never trained (so the model never stops), a doubled or missing BOS, a template that differs from
the one the model sees at inference, packed rows that see each other, LoRA adapters that
missed the attention or MLP layers. A failing check stops the run with one line naming
the row and the reason; the summary of all checks goes to preflight.json and W&B.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft.runtime.errors import MedftError
from medft.text.labels import IGNORE_INDEX, leading_special_ids
from medft.text.templates import TemplateSpec

TEMPLATE_SAMPLE = 64  # rows rendered twice for the template comparison
PACKING_SAMPLE = 8  # packed rows collated for the position-id check


class AuditError(MedftError):
    """The training signal is wrong; training would have gone ahead silently."""


@dataclass
class AuditReport:
    checks: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def passed(self, name: str, detail: str = "ok") -> None:
        self.checks[name] = detail

    def fail(self, name: str, message: str) -> None:
        self.checks[name] = f"FAILED: {message}"
        raise AuditError(f"preflight {name}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {"checks": dict(self.checks), "stats": dict(self.stats)}


def _supervised_runs(labels: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, label in enumerate(labels):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(labels)))
    return runs


def _leading_count(ids: list[int], token_id: int | None) -> int:
    count = 0
    while token_id is not None and count < len(ids) and ids[count] == token_id:
        count += 1
    return count


def expected_leading_bos(tokenizer) -> int:
    """BOS tokens at the start of a conversation in the model's own usage: the template's own
    when it renders any, else those the tokenizer's defaults add (``medft.text.labels.leading_ids_for``)."""
    probe = [{"role": "user", "content": "안녕하세요"}, {"role": "assistant", "content": "네."}]
    text = tokenizer.apply_chat_template(probe, tokenize=False)
    rendered = _leading_count(tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.bos_token_id)
    return rendered or leading_special_ids(tokenizer).count(tokenizer.bos_token_id)


def check_rows(report: AuditReport, rows, tokenizer, spec: TemplateSpec) -> None:
    """Per-row checks on the tokenized training set: supervision, end of turn, BOS."""
    eot_id = tokenizer.convert_tokens_to_ids(spec.end_of_turn)
    bos_id = tokenizer.bos_token_id
    bos_expected = expected_leading_bos(tokenizer) if bos_id is not None else 0
    pad_id = tokenizer.pad_token_id
    report.stats["pad_id_equals_eos_id"] = pad_id == eot_id
    supervised_total = 0
    for row in rows:
        ids, labels, row_id = row["input_ids"], row["labels"], row["id"]
        runs = _supervised_runs(labels)
        if not runs:
            report.fail("supervised_tokens", f"row {row_id} has no supervised token")
        supervised_total += sum(end - start for start, end in runs)
        for _start, end in runs:
            if ids[end - 1] != eot_id:
                if pad_id == eot_id:
                    why = (
                        f"the pad id equals the end-of-turn id ({eot_id}) and the labels mask it; "
                        "labels must come from an explicit assistant mask"
                    )
                else:
                    why = f"an assistant turn ends on {tokenizer.convert_ids_to_tokens(ids[end - 1])!r}"
                report.fail("end_of_turn_supervised", f"row {row_id}: {spec.end_of_turn} is not supervised ({why})")
        found = _leading_count(ids, bos_id)
        if found != bos_expected:
            report.fail(
                "leading_bos",
                f"row {row_id} starts with {found} BOS ({tokenizer.bos_token}), "
                f"the model's own usage gives {bos_expected}",
            )
    report.passed("supervised_tokens", f"{len(rows)} rows, {supervised_total} supervised tokens")
    report.passed("end_of_turn_supervised", f"every assistant turn ends on a supervised {spec.end_of_turn}")
    report.passed("leading_bos", f"every row starts with {bos_expected} BOS ({tokenizer.bos_token})")
    report.stats.update(rows=len(rows), supervised_tokens=supervised_total)


def check_template(report: AuditReport, records, tokenizer, model_template: str | None, spec_name: str) -> None:
    """medft's template must render exactly what the model's own tokenizer template renders."""
    if not model_template:
        report.passed("template_matches_model", "skipped: the model's tokenizer ships no chat template")
        return
    ours = tokenizer.chat_template
    for index in range(min(len(records), TEMPLATE_SAMPLE)):
        record = records[index]
        messages = record["messages"]
        mine = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=ours)
        theirs = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=model_template)
        if mine != theirs:
            at = next(
                (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs))
            )
            report.fail(
                "template_matches_model",
                f"row {record['id']}: template {spec_name} renders differently from the model's own chat template "
                f"at character {at} ({mine[at : at + 24]!r} vs {theirs[at : at + 24]!r}); set model.chat_template to "
                "the model's template",
            )
    report.passed("template_matches_model", f"{min(len(records), TEMPLATE_SAMPLE)} rows render identically")


def check_packing(report: AuditReport, packed_rows, collator) -> None:
    """Packed rows must reach the model with position ids restarting at each row, and no
    2-D attention mask (with one, sdpa ignores the per-row blocks)."""
    if packed_rows is None:
        report.passed("packing_position_ids", "packing off")
        return
    examples = [packed_rows[i] for i in range(min(PACKING_SAMPLE, len(packed_rows)))]
    batch = collator(examples)
    expected_rows = [[p for n in ex["seq_lengths"] for p in range(n)] for ex in examples]
    positions = batch.get("position_ids")
    if positions is None:
        report.fail("packing_position_ids", "packing is on but batches carry no per-row position ids")
    if batch.get("attention_mask") is not None:
        report.fail(
            "packing_position_ids", "packing is on but batches carry an attention mask that hides the row bounds"
        )
    if positions.shape[0] == len(examples):  # one pack per batch row
        got = [positions[i, : len(e)].tolist() for i, e in enumerate(expected_rows)]
    else:  # flattened into one sequence (flash attention)
        flat = [p for e in expected_rows for p in e]
        got, expected_rows = [positions[0, : len(flat)].tolist()], [flat]
    if got != expected_rows:
        report.fail("packing_position_ids", "position ids do not restart at every packed row")
    rows = sum(len(ex["seq_lengths"]) for ex in examples)
    report.passed("packing_position_ids", f"{rows} rows in {len(examples)} packs restart their positions")


def preflight(*, rows, records, tokenizer, spec, model_template, packed_rows, collator, model_checks=()):
    """Run every check; raise AuditError on the first failure, else return the summary.

    ``model_checks`` are the checks of the loaded model (modeling.coverage), given by the caller
    because the text layer does not know models.
    """
    report = AuditReport()
    try:
        check_rows(report, rows, tokenizer, spec)
        check_template(report, records, tokenizer, model_template, spec.name)
        check_packing(report, packed_rows, collator)
        for check in model_checks:
            check(report)
    except AuditError as err:
        err.summary = report.to_dict()
        raise
    return report.to_dict()
