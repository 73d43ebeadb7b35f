"""Pure metric functions: no model, no I/O, so every number can be checked by hand.

KorMedMCQA follows lm-evaluation-harness: the answer-extraction cascade of the paper's
Appendix B, then exact match ignoring case, punctuation and whitespace. PubMedQA uses
the official metric (sklearn's ``accuracy_score`` and macro ``f1_score``), reimplemented
here so the package does not need scikit-learn. Long answers are compared per character:
Korean has no reliable word boundaries (particles attach to words), and ``rouge_score``'s
default tokenizer drops Hangul altogether, scoring every Korean pair 0.
"""

from __future__ import annotations

import re
import statistics
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

LETTERS = "ABCDE"

# The cascade of lm-eval's kormedmcqa/utils.py (KorMedMCQA paper, Appendix B): the last match
# of the first pattern that matches.
CHOICE_PATTERNS = (
    re.compile(r"정답[:\s]*([ABCDE])", re.IGNORECASE),
    re.compile(r"정답은\s*([ABCDE])\s*입니다", re.IGNORECASE),
    re.compile(r"\b([ABCDE])\.", re.IGNORECASE),
    re.compile(r"\b([ABCDE])\b", re.IGNORECASE),
)

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def answer_letter(answer: int) -> str:
    """KorMedMCQA stores the answer as 1-5."""
    return LETTERS[int(answer) - 1]


def extract_choice(output: str) -> str:
    """The chosen letter (A-E) in a generation, or '' when none is found.

    The text is NFKC-normalised first, so full-width letters and colons (Ｃ, ：), which
    Korean input methods produce, read as their ASCII forms.
    """
    text = unicodedata.normalize("NFKC", output or "")
    for pattern in CHOICE_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return matches[-1].upper()
    return ""


# Lenient reading, tried only where the strict cascade finds nothing: answers a reader would
# accept but lm-eval's patterns miss (a Hangul particle glued to the letter, 번, a number).
# An option is a capital A-E standing alone (no Latin letter or digit either side: "A형" and
# "DNA" are words, not answers) or a number 1-5 before 번 ("3번", never "13번" or "2번째").
_LETTER = r"(?<![A-Za-z0-9])([A-E])(?![A-Za-z0-9])"
_NUMBER = r"(?<![0-9])([1-5])\s*번(?!째)"
_OPTION = f"(?:{_LETTER}|{_NUMBER})"
LENIENT_PATTERNS = (
    re.compile(r"답\s*(?:은|는|이|:)?\s*(?:보기\s*)?[(\[]?\s*" + _OPTION),  # 정답은 C번, 답: 3번, 답은 (C)
    re.compile(_OPTION + r"\s*번?\s*(?:이|가|은|는)?\s*정?답"),  # C가 정답입니다, 3번이 답입니다
    re.compile(_LETTER + r"(?=\s*(?:번|입니다|이다|이에요|예요|이|가|은|는|을|를|으로|로))"),  # C입니다, C를 고릅니다
    re.compile(_NUMBER),  # 3번
    re.compile(r"^\W*([1-5])\W*$"),  # the whole answer is one number: 3, (3), 3.
)
_CIRCLED = str.maketrans({"①": "1번", "②": "2번", "③": "3번", "④": "4번", "⑤": "5번"})


def _as_letter(match: re.Match) -> str:
    token = next(group for group in match.groups() if group)
    return LETTERS[int(token) - 1] if token.isdigit() else token


def extract_choice_lenient(output: str) -> str:
    """The strict choice when there is one, else a choice in a format lm-eval's cascade misses
    (``C번``, ``C가 정답입니다``, ``답은 3번``, ``③``), or '' when there is none either.

    Never below strict: every strict answer is kept, so lenient minus strict accuracy is
    what the answer format alone cost."""
    strict = extract_choice(output)
    if strict:
        return strict
    text = unicodedata.normalize("NFKC", (output or "").translate(_CIRCLED))
    for pattern in LENIENT_PATTERNS:
        matches = list(pattern.finditer(text))
        if matches:
            return _as_letter(matches[-1])
    return ""


def normalize_exact(text: str) -> str:
    """lm-eval's exact_match settings: ignore_case, ignore_punctuation, spaces and newlines removed."""
    return text.lower().translate(_PUNCTUATION).replace(" ", "").replace("\n", "")


def exact_match(prediction: str, target: str) -> bool:
    return normalize_exact(prediction) == normalize_exact(target)


# --------------------------------------------------------------------------- classification
def accuracy(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """sklearn.metrics.accuracy_score."""
    _same_length(y_true, y_pred)
    if not y_true:
        return 0.0
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """sklearn.metrics.f1_score(average="macro"): unweighted mean over the labels present in
    either list; a label never predicted (or never true) scores 0 for itself."""
    _same_length(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(t == label and p == label for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != label and p == label for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == label and p != label for t, p in zip(y_true, y_pred, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels but {len(b)} predictions")


# --------------------------------------------------------------------------- long answers
def char_tokens(text: str) -> list[str]:
    """Characters (Hangul: syllables) after NFC, casefolding, and dropping whitespace and punctuation."""
    text = unicodedata.normalize("NFC", text or "").casefold()
    return [ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P")]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence, bit-parallel (Hyyrö 2004): long answers stay fast in Python."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for ch in b:
        u = v & masks.get(ch, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _f(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def rouge_l_char(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over characters: LCS / length for precision and recall."""
    pred, ref = char_tokens(prediction), char_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    return _f(lcs / len(pred), lcs / len(ref))


def f1_char(prediction: str, reference: str) -> float:
    """SQuAD-style F1 over the multiset of characters (order ignored)."""
    pred, ref = char_tokens(prediction), char_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    return _f(common / len(pred), common / len(ref))


# --------------------------------------------------------------------------- summaries
def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None
