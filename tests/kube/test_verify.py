"""The check `modelport build` runs on the models it copies (and the image build runs again
inside): a version folder matches its _COMPLETE manifest, or the build is refused naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.errors import ModelportError
from modelport.examples import write_mnist_repository
from modelport.kube.verify import main, verify_models


def _models(tmp_path: Path) -> Path:
    write_mnist_repository(tmp_path / "models" / "mnist", version=3)
    return tmp_path / "models"


def test_an_untouched_copy_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _models(tmp_path)
    assert verify_models(root) == 1
    assert main([str(root)]) == 0
    assert "1 model version(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        (lambda v: v.joinpath("model.onnx").write_bytes(b"\0" * v.joinpath("model.onnx").stat().st_size),
         "model.onnx: sha256"),
        (lambda v: v.joinpath("model.yaml").write_text("outputs: {}\n"), "model.yaml: "),
        (lambda v: v.joinpath("training.json").unlink(), "training.json: listed in _COMPLETE but missing"),
        (lambda v: v.joinpath("extra.bin").write_bytes(b"x"), "extra.bin: not listed in _COMPLETE"),
        (lambda v: v.joinpath("_COMPLETE").unlink(), "no _COMPLETE manifest"),
        (lambda v: v.joinpath("_COMPLETE").write_text("{"), "_COMPLETE: not a valid manifest"),
    ],
    ids=["same size, other bytes", "other size", "missing", "unlisted", "no manifest", "bad manifest"],
)  # fmt: skip
def test_a_tampered_version_is_refused_naming_the_file(
    tmp_path: Path, tamper: object, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _models(tmp_path)
    tamper(root / "mnist" / "3")  # type: ignore[operator]
    with pytest.raises(ModelportError, match=says.replace("(", r"\(")) as caught:
        verify_models(root)
    assert str(root / "mnist" / "3") in caught.value.message
    assert main([str(root)]) == 1
    assert says in capsys.readouterr().err
