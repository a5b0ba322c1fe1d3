"""dib-block-device's argument and params handling (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dibpy.cli.block_device import main

from .conftest import REPO


def write_params(tmp_path: Path, **extra: object) -> Path:
    data = {
        "config": str(REPO / "elements/block-device-efi/block-device-default.yaml"),
        "image-dir": str(tmp_path / "img"),
        "mount-base": str(tmp_path / "mnt"),
        "build-dir": str(tmp_path / "build"),
        "root-fs-type": "xfs",
        **extra,
    }
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_getval_without_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_params(tmp_path)
    assert main(["--params", str(p), "getval", "root-label"]) == 0
    assert capsys.readouterr().out == "img-rootfs\n"
    assert main(["--params", str(p), "getval", "mount-points"]) == 0
    assert capsys.readouterr().out == "/|/boot/efi\n"


def test_params_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIB_BLOCK_DEVICE_PARAMS_YAML", str(write_params(tmp_path)))
    assert main(["getval", "root-fstype"]) == 0
    assert capsys.readouterr().out == "xfs\n"


def test_errors_are_one_line_with_the_yaml_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("- local_loop: {name: image0}\n- mkfs: {name: r, base: imag0, type: ext4}\n")
    p = write_params(tmp_path, config=str(cfg))
    assert main(["--params", str(p), "init"]) != 0
    err = capsys.readouterr().err
    assert "config[1].mkfs.base: undefined node 'imag0' (did you mean 'image0'?)" in err
    assert str(cfg) in err
    assert "Traceback" not in err


def test_missing_params(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DIB_BLOCK_DEVICE_PARAMS_YAML", raising=False)
    assert main(["init"]) != 0
    assert "DIB_BLOCK_DEVICE_PARAMS_YAML" in capsys.readouterr().err
    bad = tmp_path / "p.yaml"
    bad.write_text("image-dir: /x\n")
    assert main(["--params", str(bad), "init"]) != 0
    err = capsys.readouterr().err
    assert "missing 'mount-base'" in err and "missing 'build-dir'" in err


def test_cleanup_with_nothing_made(tmp_path: Path) -> None:
    p = write_params(tmp_path)
    assert main(["--params", str(p), "cleanup"]) == 0
