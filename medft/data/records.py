"""The one record shape every source becomes, checked here so a bad row fails at load time.

A record is ``{"id": str, "messages": [{"role", "content"}, ...], "meta": {str: str | None}}``.
Text is NFC-normalised because Korean arrives both composed and decomposed (macOS folder
names are NFD), and two spellings of one syllable would otherwise be two tokens and two
different questions for the leakage check.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

ROLES = ("system", "user", "assistant")
# Meta keys every loader sets; a source's own metadata may not overwrite them.
RESERVED_META = ("source", "source_split")


class RecordError(ValueError):
    """One input item cannot become a record; the loader skips it with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def clean_text(value: Any) -> str:
    """A field as NFC text with outer whitespace removed ('' for None)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    return nfc(value).strip()


def meta_value(value: Any) -> str | None:
    """Meta values are strings (or None) so every source fits one Arrow struct of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return nfc(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ", ".join(nfc(v) for v in value)
    return nfc(json.dumps(value, ensure_ascii=False, sort_keys=True))


def make_record(
    record_id: str,
    user: str,
    assistant: str,
    meta: Mapping[str, Any],
    system: str | None = None,
) -> dict:
    """Build and validate one single-turn record; raise RecordError when it cannot exist."""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": assistant})
    record = {
        "id": clean_text(record_id),
        "messages": [{"role": m["role"], "content": clean_text(m["content"])} for m in messages],
        "meta": {nfc(str(k)): meta_value(v) for k, v in meta.items()},
    }
    validate_record(record)
    return record


def validate_record(record: Mapping[str, Any]) -> None:
    """Raise RecordError unless ``record`` follows the contract."""
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise RecordError("invalid_record", "empty id")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RecordError("invalid_record", "no messages")
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RecordError("invalid_record", f"message {i} has role {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise RecordError(f"empty_{role}" if role in ROLES else "invalid_record", f"message {i} is empty")
        if role == "system" and i != 0:
            raise RecordError("invalid_record", "system message must come first")
    roles = [m["role"] for m in messages if m["role"] != "system"]
    if roles[0] != "user" or roles[-1] != "assistant":
        raise RecordError("invalid_record", "turns must start with user and end with assistant")
    meta = record.get("meta")
    if not isinstance(meta, dict) or not meta.get("source"):
        raise RecordError("invalid_record", "meta.source missing")
    for key, value in meta.items():
        if value is not None and not isinstance(value, str):
            raise RecordError("invalid_record", f"meta.{key} is {type(value).__name__}, not str")


def with_system(record: dict, prompt: str | None) -> dict:
    """Prepend a system turn (config wins over none; a record's own system turn is kept)."""
    prompt = clean_text(prompt)
    if not prompt or record["messages"][0]["role"] == "system":
        return record
    return {**record, "messages": [{"role": "system", "content": prompt}, *record["messages"]]}


_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_question(text: str) -> str:
    """Compare questions ignoring width, case, spacing and punctuation."""
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def question_key(record: Mapping[str, Any]) -> str:
    """The leakage key: all user turns of a record, normalised."""
    return normalise_question("\n".join(m["content"] for m in record["messages"] if m["role"] == "user"))


def answer_text(record: Mapping[str, Any]) -> str:
    """All assistant turns: the answer side of the leakage key, normalised like questions.

    Pairing reuses answers (every question of an AI Hub folder may get the same one), so a
    held-out row whose answer training already holds measures memorisation, not skill.
    """
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")


def unify_meta(records: Iterable[dict]) -> list[str]:
    """Give every record the same meta keys (missing -> None) and return them, sorted."""
    records = list(records)
    keys = sorted({k for r in records for k in r["meta"]})
    for r in records:
        r["meta"] = {k: r["meta"].get(k) for k in keys}
    return keys
