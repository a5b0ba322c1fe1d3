"""``diskimage-builder -j 2`` from a regular (non-editable) install of dibpy: two small
images from one YAML file, built at once from the tiny fixture OS, each valid, each
build's lines prefixed with its image name, nothing left mounted or attached."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"


@pytest.fixture(autouse=True)
def _need_chroot() -> None:
    reason = chroot_works()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with ``pip install`` of this checkout (a wheel build, not editable)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    r = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot pip install dibpy here: {r.stderr.strip().splitlines()[-1:]}")
    return venv


def test_parallel_yaml_build_from_an_installed_dibpy(
    installed: Path, tmp_path: Path, no_leaks: None
) -> None:
    out = tmp_path / "out"
    (tmp_path / "tmp").mkdir()
    spec = tmp_path / "images.yaml"
    spec.write_text(
        f"- imagename: {out}/one\n"
        "  types: [qcow2]\n  skip-base: true\n  elements: [tiny-os]\n"
        "- elements: [block-device-mbr]\n"
        f"- imagename: {out}/two\n"
        "  types: [raw, qcow2]\n  skip-base: true\n  elements: [tiny-os, block-device-mbr]\n"
        "  environment: {DIB_ROOT_LABEL: two-root}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(
        ELEMENTS_PATH=str(FIXTURES),
        TMP_DIR=str(tmp_path / "tmp"),
        DIB_IMAGE_CACHE=str(tmp_path / "cache"),
        PYTHONPATH="",
    )
    # run from outside the checkout: nothing of the source tree may be used
    r = subprocess.run(
        [str(installed / "bin" / "diskimage-builder"), "-j", "2", str(spec)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = (r.stdout + r.stderr).splitlines()
    for name in ("one", "two"):
        mine = [line for line in lines if line.startswith(f"[{out}/{name}] ")]
        assert any(f"wrote {out}/{name}.qcow2" in line for line in mine), lines[-40:]
    assert all(line.startswith(f"[{out}/") for line in lines if line.strip()), lines[:20]
    for image, fmt in (("one.qcow2", "qcow2"), ("two.qcow2", "qcow2"), ("two.raw", "raw")):
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(out / image)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info["format"] == fmt and info["virtual-size"] > 0, (image, info)
    # each build had a TMP_DIR of its own, and it is gone
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_image_is_named_and_the_others_still_build(
    installed: Path, tmp_path: Path, no_leaks: None
) -> None:
    out = tmp_path / "out"
    (tmp_path / "tmp").mkdir()
    spec = tmp_path / "images.yaml"
    spec.write_text(
        f"- imagename: {out}/bad\n  skip-base: true\n"
        "  elements: [tiny-os, failing, no-final-image]\n"
        f"- imagename: {out}/good\n  types: [qcow2]\n  skip-base: true\n"
        "  elements: [tiny-os, block-device-mbr]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(ELEMENTS_PATH=str(FIXTURES), TMP_DIR=str(tmp_path / "tmp"), PYTHONPATH="")
    env["DIB_IMAGE_CACHE"] = str(tmp_path / "cache")
    r = subprocess.run(
        [str(installed / "bin" / "diskimage-builder"), "-j", "2", str(spec)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert (
        f"failed: {out}/bad (exit status" in r.stderr
        and f"{out}/good" not in r.stderr.split("failed:")[-1]
    )
    assert (out / "good.qcow2").is_file()
    assert list((tmp_path / "tmp").iterdir()) == []
