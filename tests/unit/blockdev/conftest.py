from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dibpy.blockdev import BlockDeviceParams
from dibpy.blockdev.registry import test_manager, use_manager

CONFIGS = Path(__file__).parent / "configs"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _plugins() -> Iterator[None]:
    """Unit tests use a stevedore test manager, not the installed entry points."""
    with use_manager(test_manager()):
        yield


@pytest.fixture
def params(tmp_path: Path) -> BlockDeviceParams:
    return BlockDeviceParams(
        image_dir=tmp_path / "img",
        mount_base=tmp_path / "mnt",
        build_dir=tmp_path / "build",
        image_size=2 * 1024**3,
    )
