"""The ASAM stages as keyword-argument functions: same output as the program given the same
options, and the program's one-line error as the exception message."""

import os
import subprocess

import pytest

import asam
from conftest import DATA


def _sa1b():
    d = os.path.join(DATA, "sa1b")
    if not os.path.exists(os.path.join(d, "sa_1.json")):
        pytest.skip("tests/data/sa1b missing")
    return d


def test_eval_equals_cli(sam_tiny_pth, tmp_path):
    d = _sa1b()
    table = asam.eval(model=sam_tiny_pth, data="tiny=sa1b:" + d, limit=1, quiet=True, json=tmp_path / "t.json")
    cli = subprocess.run([os.path.join(os.path.dirname(asam.__file__), "bin", "asam") if not os.environ.get("ASAM_BINARY")
                          else os.environ["ASAM_BINARY"], "eval", "--model", sam_tiny_pth,
                          "--data", "tiny=sa1b:" + d, "--limit", "1", "--quiet"], capture_output=True, text=True,
                         check=True)
    assert "mIoU" in table and table == cli.stdout
    assert (tmp_path / "t.json").stat().st_size > 0


def test_stage_errors(sam_tiny_pth, tmp_path):
    with pytest.raises(asam.AsamError, match="asam tune: .*--data") as e:
        asam.tune(model=sam_tiny_pth, out=tmp_path / "t")
    assert e.value.returncode == 2  # usage error
    with pytest.raises(asam.AsamError, match="nonexistent.pth"):
        asam.eval(model=tmp_path / "nonexistent.pth", data="sa1b:" + _sa1b(), quiet=True)


def test_keyword_mapping():
    from asam.stages import _args

    assert _args({"model": ["a.pth", "b.pth"], "no_augment": True, "resume": False, "seed": None, "lr": 2e-3,
                  "out": "d"}) == ["--model", "a.pth", "--model", "b.pth", "--no-augment", "--lr", "0.002", "--out", "d"]
