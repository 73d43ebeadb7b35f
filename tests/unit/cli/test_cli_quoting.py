"""Any path works on the command line: values Hydra's grammar rejects are quoted for it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from medft.cli import prepare_overrides, quote_for_hydra
from medft.config import SAMPLES_DIR
from medft.runtime.errors import ConfigError

from conftest import REPO

AIHUB_FOLDER = "120.초거대AI 사전학습용 헬스케어 질의응답 데이터/3.개방데이터/1.데이터"


@pytest.mark.parametrize(
    "value",
    [
        f"/x/{AIHUB_FOLDER}",
        "/data/TL/1.질문/감염성질환/결핵/식이, 생활",
        "/x/it's here",
        'say "hi"',
        "(괄호)",
        "C:\\data\\",
        "both ' and \" quotes",
    ],
)
def test_a_value_arrives_in_hydra_exactly_as_typed(value):
    (arg,) = quote_for_hydra([f"data.sources.aihub.path={value}"])
    assert OverridesParser.create().parse_override(arg).value() == value


def test_values_hydra_reads_are_left_alone():
    argv = ["-m", "model=tiny", "train.learning_rate=1e-4,2e-4", "logger.tags=[a,b]", "name=x y", "+k=${oc.env:HOME}"]
    assert quote_for_hydra(argv) == argv


def test_keys_are_still_checked_after_quoting():
    with pytest.raises(ConfigError, match=r"^data.sources.aihub.pth is not a setting"):
        prepare_overrides([f"data.sources.aihub.pth=/x/{AIHUB_FOLDER}"])


def test_prepare_reads_the_official_aihub_folder_name(tmp_path):
    root = tmp_path / AIHUB_FOLDER
    shutil.copytree(SAMPLES_DIR / "aihub", root / "Training" / "02.라벨링데이터")
    env = {**os.environ, "MEDFT_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medft.prepare",
            "data=aihub",
            f"data.sources.aihub.path={root}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text(encoding="utf-8"))
    assert AIHUB_FOLDER in json.dumps(report, ensure_ascii=False)
