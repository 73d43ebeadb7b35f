"""Benchmark metrics on fixed outputs: KorMedMCQA extraction, PubMedQA against sklearn, char ROUGE-L/F1."""

from __future__ import annotations

import random
import unicodedata
import warnings

import pytest

from medft.evals import scoring


@pytest.mark.parametrize(
    "output, letter",
    [
        ("정답은 C입니다", "C"),
        ("정답은C입니다.", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("정답: c", "C"),
        ("E", "E"),
        (" B", "B"),
        ("정답： D", "D"),  # the prompt's own full-width colon
        ("정답：Ｃ", "C"),  # full-width letter
        ("모르겠습니다", ""),
        ("", ""),
        ("F. 해당 없음", ""),
        # The first pattern that matches wins, and its last match:
        ("A. 틀림 B. 틀림 정답: D", "D"),
        ("A. 급성 하벽 심근경색\nC. 대동맥박리", "C"),
        ("정답은 B입니다. 그러나 A. 도 가능", "B"),  # pattern 2 comes before "X." in the cascade
        ("정답을 고르면 B. 또는 A.", "A"),  # no 정답 pattern: the last "X." wins
        ("A와 B 중에서 B", "B"),  # Hangul is a word character: "A와" has no boundary after A
        ("a patient", "A"),  # the cascade's known weakness, kept for comparability with lm-eval
        # Answers a reader accepts but lm-eval's cascade does not: strict counts them as no answer.
        ("C번", ""),
        ("C가 정답입니다", ""),
        ("답은 C번", ""),
    ],
)
def test_kormedmcqa_extraction(output, letter):
    assert scoring.extract_choice(output) == letter


@pytest.mark.parametrize(
    "output, letter",
    [
        # Korean particles and copulas glued to the letter
        ("C가 정답입니다", "C"),
        ("C번", "C"),
        ("답은 C번", "C"),
        ("정답은 C번입니다", "C"),
        ("C입니다", "C"),
        ("D를 고르겠습니다", "D"),
        ("B는 옳고 나머지는 틀립니다", "B"),
        ("A는 오답이고 E가 정답입니다", "E"),  # the letter named as 정답 wins over an earlier particle
        ("정답은 보기 E번", "E"),
        ("답: (D)", "D"),
        # numbers, circled numbers and full-width letters
        ("3번", "C"),
        ("정답은 2번입니다", "B"),
        ("5번이 답입니다", "E"),
        ("정답은 ③", "C"),
        ("④", "D"),
        ("Ｃ가 정답", "C"),
        ("(3)", "C"),
        ("4", "D"),
        # what the strict cascade finds is kept as it is
        ("정답은 C입니다", "C"),
        ("a patient", "A"),
        # never an answer
        ("Bacteria", ""),  # a capital inside an English word
        ("DNA는 이중나선입니다", ""),
        ("CT를 찍습니다", ""),
        ("A형 간염", ""),  # a letter that is part of a Korean word
        ("13번 문항", ""),
        ("하루 2번째 복용", ""),
        ("6번", ""),
        ("F번", ""),
        ("정답이 없습니다", ""),
        ("모르겠습니다", ""),
        ("", ""),
    ],
)
def test_kormedmcqa_lenient_extraction(output, letter):
    assert scoring.extract_choice_lenient(output) == letter


def test_lenient_keeps_every_strict_answer():
    outputs = [
        "정답은 C입니다",
        "(C)",
        "정답: c",
        "E",
        "A. 틀림 B. 틀림 정답: D",
        "정답을 고르면 B. 또는 A.",
        "A와 B 중에서 B",
        "정답 A, 해설: B. 는 오답",
        "정답：Ｃ",
    ]
    for output in outputs:
        assert scoring.extract_choice(output)
        assert scoring.extract_choice_lenient(output) == scoring.extract_choice(output), output


def test_extraction_cascade_order():
    # Pattern 1 (정답[:\s]*X) beats a later "X." elsewhere in the text.
    assert scoring.extract_choice("정답 A, 해설: B. 는 오답") == "A"
    # Pattern 2 needs 입니다 after the letter.
    assert scoring.extract_choice("정답은 E 입니다") == "E"


@pytest.mark.parametrize(
    "prediction, target, hit",
    [("C", "C", True), ("c", "C", True), ("C.", "C", True), (" C\n", "C", True), ("", "C", False), ("D", "C", False)],
)
def test_exact_match(prediction, target, hit):
    assert scoring.exact_match(prediction, target) is hit


def test_answer_letter():
    assert [scoring.answer_letter(i) for i in range(1, 6)] == list("ABCDE")


CLASSIFICATION_CASES = [
    (["yes", "no", "maybe"], ["yes", "no", "maybe"]),
    (["yes", "yes", "no", "maybe", "no", "yes"], ["yes", "no", "no", "yes", "no", "yes"]),  # maybe never predicted
    (["yes", "yes", "no", "no"], ["maybe", "yes", "no", "yes"]),  # maybe predicted, never true
    (["yes", "no", "maybe", "yes"], ["yes", "yes", "yes", "yes"]),  # one class for everything
    (["no", "no", "no"], ["no", "no", "no"]),
    (["maybe", "yes", "no", "no", "yes", "maybe", "yes"], ["no", "yes", "maybe", "no", "maybe", "maybe", "no"]),
]


@pytest.mark.parametrize("truth, predicted", CLASSIFICATION_CASES)
def test_pubmedqa_metrics_equal_sklearn(truth, predicted):
    from sklearn.metrics import accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes never predicted; their F1 is 0
        expected_f1 = f1_score(truth, predicted, average="macro")
    assert scoring.accuracy(truth, predicted) == pytest.approx(accuracy_score(truth, predicted))
    assert scoring.macro_f1(truth, predicted) == pytest.approx(expected_f1)


def test_pubmedqa_metrics_on_random_labels_equal_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 30)
        truth = [rng.choice(["yes", "no", "maybe"]) for _ in range(n)]
        predicted = [rng.choice(["yes", "no"]) for _ in range(n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = f1_score(truth, predicted, average="macro")
        assert scoring.macro_f1(truth, predicted) == pytest.approx(expected)
        assert scoring.accuracy(truth, predicted) == pytest.approx(accuracy_score(truth, predicted))


def test_classification_length_mismatch():
    with pytest.raises(ValueError):
        scoring.accuracy(["yes"], [])


@pytest.mark.parametrize(
    "prediction, reference, rouge, f1",
    [
        ("대한민국의 수도는 서울입니다.", "대한민국의 수도는 서울입니다.", 1.0, 1.0),
        ("서울입니다", "부산입니다", 0.6, 0.6),  # 입니다 shared: P = R = 3/5
        ("가나다", "다나가", 1 / 3, 1.0),  # order matters for ROUGE-L only
        ("고혈압 약", "고혈압 치료 약물", 8 / 11, 8 / 11),  # P = 4/4, R = 4/7
        ("서울, 입니다!", "서울입니다", 1.0, 1.0),  # spaces and punctuation ignored
        ("아아아", "아", 0.5, 0.5),  # repeated characters count once per match
        ("", "", 1.0, 1.0),
        ("", "서울", 0.0, 0.0),
        ("Seoul", "seoul", 1.0, 1.0),
    ],
)
def test_char_rouge_l_and_f1(prediction, reference, rouge, f1):
    assert scoring.rouge_l_char(prediction, reference) == pytest.approx(rouge)
    assert scoring.f1_char(prediction, reference) == pytest.approx(f1)


def test_char_metrics_ignore_unicode_form():
    decomposed = unicodedata.normalize("NFD", "고혈압 치료")
    assert scoring.rouge_l_char(decomposed, "고혈압 치료") == 1.0
    assert scoring.f1_char(decomposed, "고혈압 치료") == 1.0


def _lcs_table(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(1)
    for _ in range(500):
        a = [rng.choice("가나다라ab") for _ in range(rng.randint(0, 40))]
        b = [rng.choice("가나다라ab") for _ in range(rng.randint(0, 40))]
        assert scoring.lcs_length(a, b) == _lcs_table(a, b)


def test_summaries():
    assert scoring.mean([1, 2, 6]) == 3
    assert scoring.median([1, 2, 6]) == 2
    assert scoring.mean([]) is None and scoring.median([]) is None
