"""KorMedMCQA fully reported on the shipped sample: strict (lm-eval) and lenient accuracy, the strict
no-answer rate, per profession, in the result, the printed table, W&B and the model card."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from medft.config import SAMPLES_DIR
from medft.evals import kormedmcqa, runner, scoring
from medft.evals.settings import load_benchmark
from medft.evals.tracking import flat_metrics, group_rows, log_result
from medft.modeling.generate import Reply

from conftest import compose_config

# How each profession answers the sample's questions.
STYLES = {
    "doctor": lambda letter: f"정답은 {letter}입니다",  # strict and lenient
    "nurse": lambda letter: f"{letter}번",  # lenient only: strict finds no answer
    "pharm": lambda letter: f"정답: {scoring.LETTERS[(scoring.LETTERS.index(letter) + 1) % 5]}",  # wrong
    "dentist": lambda letter: "모르겠습니다",  # no answer either way
}
EXPECTED = {  # exact_match, lenient_match, no_answer_rate
    "doctor": (1.0, 1.0, 0.0),
    "nurse": (0.0, 1.0, 1.0),
    "pharm": (0.0, 0.0, 0.0),
    "dentist": (0.0, 0.0, 1.0),
}


@pytest.fixture(scope="module")
def result(tiny_tokenizer):
    eval_cfg = load_benchmark("kormedmcqa")
    OmegaConf.update(eval_cfg, "path", str(SAMPLES_DIR / "eval" / "kormedmcqa"))
    OmegaConf.update(eval_cfg, "batch_size", 2)
    subsets = kormedmcqa.load_items(eval_cfg)
    answers = [STYLES[s.name](scoring.answer_letter(row["answer"])) for s in subsets for row in s.items]

    def generate(model, tokenizer, texts, gen_kwargs):
        return [Reply(text=answers.pop(0), new_tokens=3, seconds=0.1) for _ in texts]

    cfg = compose_config(["logger=none"])
    loaded = SimpleNamespace(
        cfg=cfg,
        tokenizer=tiny_tokenizer,
        model=SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None),
        run_dir=None,
        is_adapter=False,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kormedmcqa, "generate_batch", generate)
        scored = runner.score_benchmark(loaded, eval_cfg, subsets, progress=False)
    assert not answers, "every question answered once"
    return scored


def test_each_profession_strict_and_lenient(result):
    for name, (strict, lenient, no_answer) in EXPECTED.items():
        group = result["groups"][name]
        assert group["n"] == 3
        assert (group["exact_match"], group["lenient_match"], group["no_answer_rate"]) == (strict, lenient, no_answer)
        assert result["metrics"][f"exact_match_{name}"] == strict
        assert result["metrics"][f"lenient_match_{name}"] == lenient
    metrics = result["metrics"]
    assert metrics["n"] == 12
    assert metrics["exact_match"] == pytest.approx(0.25)
    assert metrics["lenient_match"] == pytest.approx(0.5)
    assert metrics["no_answer_rate"] == pytest.approx(0.5)
    nurse = next(i for i in result["items"] if i["subset"] == "nurse")
    assert nurse["prediction"] == "" and nurse["prediction_lenient"] == nurse["target"] and nurse["correct_lenient"]


def test_printed_table_has_a_row_per_profession_with_both_scores(result):
    table = runner.format_table(result)
    header = next(line for line in table.splitlines() if "lenient_match" in line and "no_answer_rate" in line)
    assert header.split() == ["n", "exact_match", "lenient_match", "no_answer_rate"]
    nurse = next(line for line in table.splitlines() if line.split()[:1] == ["nurse"])
    assert nurse.split() == ["nurse", "3", "0.0000", "1.0000", "1.0000"]
    assert "exact_match_nurse" not in table, "per-profession numbers appear once, in their row"


def test_wandb_gets_every_profession(result):
    columns, rows = group_rows(result)
    assert columns == ["group", "n", "exact_match", "lenient_match", "no_answer_rate"]
    assert rows[1] == ["nurse", 3, 0.0, 1.0, 1.0]
    flat = flat_metrics("kormedmcqa", result)
    assert flat["kormedmcqa/lenient_match"] == pytest.approx(0.5)
    for name, (strict, lenient, no_answer) in EXPECTED.items():
        assert flat[f"kormedmcqa/{name}/exact_match"] == strict
        assert flat[f"kormedmcqa/{name}/lenient_match"] == lenient
        assert flat[f"kormedmcqa/{name}/no_answer_rate"] == no_answer

    class Run:
        logged, summary = {}, {}

        def log(self, values):
            self.logged.update(values)

    run = Run()
    log_result(run, "kormedmcqa", result)
    assert run.logged["kormedmcqa/groups"].columns == columns and len(run.logged["kormedmcqa/groups"].data) == 4
    assert "prediction_lenient" in run.logged["kormedmcqa/items"].columns
    assert run.summary["kormedmcqa/dentist/no_answer_rate"] == 1.0


def test_model_card_reports_strict_and_lenient_per_profession(result, tmp_path):
    from medft.runs import model_card, rundir

    (tmp_path / "eval").mkdir()
    rundir.write_json(tmp_path / "eval" / "kormedmcqa.json", result)
    rundir.write_json(tmp_path / "eval" / "kormedmcqa.step5.json", {**result, "metrics": {"exact_match": 0.99}})
    card = model_card.render(tmp_path, compose_config(), merged=False, dtype="float32")
    assert "| eval: kormedmcqa | exact_match 0.2500 · lenient_match 0.5000 · no_answer_rate 0.5000 · n 12 |" in card
    assert "| nurse | 3 | 0.0000 | 1.0000 | 1.0000 |" in card
    assert "| all (size-weighted) | 12 | 0.2500 | 0.5000 | 0.5000 |" in card
    assert "0.99" not in card, "scores taken during training stay out of the card"
