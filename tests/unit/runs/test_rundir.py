"""RunDir names every file of a run directory."""

from __future__ import annotations

from pathlib import Path

from medft.runs.rundir import RunDir, write_json


def test_every_file_has_its_name(tmp_path):
    run = RunDir(tmp_path)
    names = {
        "config": "config.resolved.yaml",
        "manifest": "manifest.json",
        "metrics": "metrics.json",
        "history": "history.json",
        "data_report": "data_report.json",
        "preflight": "preflight.json",
        "loss_plot": "loss.png",
        "readme": "README.md",
        "export_info": "export.json",
        "failed": "failed.json",
        "eval_step0": "eval_step0.json",
        "checkpoints": "checkpoints",
        "eval_dir": "eval",
        "merged": "merged",
        "adapter": "adapter",
        "model": "model",
    }
    for attribute, name in names.items():
        assert getattr(run, attribute) == tmp_path / name, attribute
    assert run.hydra_overrides == tmp_path / ".hydra" / "overrides.yaml"
    assert run.artifact("qlora") == run.adapter and run.artifact("freeze") == run.model
    assert RunDir(str(tmp_path)) == run and run.name == tmp_path.name


def test_eval_results_and_markers(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_run()
    write_json(run.metrics, {})
    assert run.is_run()
    assert run.eval_result("kormedmcqa") == tmp_path / "eval" / "kormedmcqa.json"
    assert run.eval_result("kormedmcqa", step=5) == tmp_path / "eval" / "kormedmcqa.step5.json"
    run.eval_dir.mkdir()
    for stem in ("kormedmcqa", "kormedmcqa.step5", "heldout"):
        write_json(run.eval_dir / f"{stem}.json", {})
    assert [p.name for p in run.final_eval_results()] == ["heldout.json", "kormedmcqa.json"]


def test_saved_weights_prefer_the_adapter(tmp_path):
    run = RunDir(tmp_path)
    assert run.saved_weights() is None
    run.model.mkdir()
    (run.model / "model.safetensors").write_bytes(b"")
    assert run.saved_weights() == (run.model, False)
    run.adapter.mkdir()
    assert run.saved_weights() == (run.model, False)  # an empty folder holds no weights
    (run.adapter / "adapter_model.safetensors").write_bytes(b"")
    assert run.saved_weights() == (Path(run.adapter), True)
