"""A DIB_* variable that nothing of the build reads is named, with a did-you-mean."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dibpy.build import plan
from dibpy.config import build_config
from dibpy.envcheck import unread_variables
from tests.conftest import REPO, write

ELEMENTS = REPO / "elements"


def _plan_warnings(caplog: pytest.LogCaptureFixture, tmp_path: Path, **env: str) -> list[str]:
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm", "devuser"],
        {"ELEMENTS_PATH": str(ELEMENTS), **env},
    )
    with caplog.at_level(logging.WARNING):
        plan(cfg)
    return [r.getMessage() for r in caplog.records if "not read by any element" in r.getMessage()]


def test_a_misspelt_release_is_named_with_the_real_name(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    warnings = _plan_warnings(caplog, tmp_path, DIB_RELASE="trixie")
    assert warnings == [
        "DIB_RELASE: not read by any element of this build nor by dibpy; did you mean DIB_RELEASE?"
    ]


def test_variables_the_build_reads_are_not_named(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    warnings = _plan_warnings(
        caplog,
        tmp_path,
        DIB_RELEASE="bookworm",  # debian-minimal
        DIB_DEV_USER_USERNAME="me",  # devuser
        DIB_GRUB_TIMEOUT="0",  # bootloader, through vm
        DIB_CHECKSUM="sha256",  # dibpy itself
        DIB_REPOLOCATION_anything="/srv/x",  # a prefix family (source-repositories)
        DIB_INSTALLTYPE_pip_and_virtualenv="package",  # install-types' prefix
    )
    assert warnings == []


def test_a_variable_only_another_element_reads_is_named(tmp_path: Path) -> None:
    el = tmp_path / "reader"
    write(el / "install.d" / "10-read", '#!/bin/bash\necho "${DIB_READER_COLOUR:-}"\n', 0o755)
    other = tmp_path / "other"
    other.mkdir()
    env = {"DIB_READER_COLOUR": "blue"}
    assert unread_variables(env, [el]) == []
    (warning,) = unread_variables(env, [other])
    assert warning.startswith("DIB_READER_COLOUR: not read by any element")
    assert "did you mean" not in warning


def test_a_build_without_root_is_refused_before_anything_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dibpy.build import Build
    from dibpy.errors import DibpyError

    (tmp_path / "tmp").mkdir()
    cfg = build_config(
        {"output": str(tmp_path / "img")},
        ["debian-minimal", "vm"],
        {"ELEMENTS_PATH": str(ELEMENTS), "TMP_DIR": str(tmp_path / "tmp")},
    )
    p = plan(cfg)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(DibpyError, match="must run as root") as e:
        Build(p).run()
    assert e.value.hint and "no sudo" in e.value.hint
    assert not list((tmp_path / "tmp").iterdir())
