"""The two stevedore registries (outputs, block-device plugins): setup.cfg declares
exactly the built-in tables, and an entry point may not replace a built-in."""

from __future__ import annotations

import configparser
from typing import Any

import pytest
from stevedore import ExtensionManager
from stevedore.extension import Extension

from dibpy import outputs
from dibpy.blockdev import registry as bdplugin
from dibpy.errors import ConfigError
from dibpy.outputs.base import OutputPlugin
from dibpy.outputs.qemu import Qcow2
from tests.conftest import REPO


def _entry_points(group: str) -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    text = cfg["options.entry_points"][group]
    pairs = [line.split("=", 1) for line in text.strip().splitlines() if line.strip()]
    return {k.strip(): v.strip() for k, v in pairs}


@pytest.mark.parametrize(
    ("group", "builtins"),
    [(outputs.GROUP, outputs.BUILTINS), (bdplugin.GROUP, bdplugin.BUILTINS)],
)
def test_setup_cfg_declares_the_builtins(group: str, builtins: dict[str, str]) -> None:
    assert _entry_points(group) == builtins


def test_every_builtin_output_loads_under_its_name() -> None:
    avail = outputs.available()
    for name in outputs.BUILTINS:
        cls = avail[name]
        assert issubclass(cls, OutputPlugin) and cls.name == name


def _manager(**plugins: Any) -> Any:
    exts: list[Extension[Any]] = [Extension(k, None, v, None) for k, v in plugins.items()]  # type: ignore[arg-type]
    return ExtensionManager.make_test_instance(exts)


class MyQcow2(Qcow2):
    name = "qcow2"


class Fancy(OutputPlugin):
    name = "fancy"
    extension = "fancy"


def test_an_entry_point_may_not_replace_a_builtin_output() -> None:
    with pytest.raises(ConfigError) as e, outputs.use_manager(_manager(qcow2=MyQcow2)):
        pass
    msg = e.value.message
    assert "'qcow2'" in msg and "MyQcow2" in msg and "dibpy.outputs.qemu.Qcow2" in msg, msg
    assert "built-in" in str(e.value.hint)


def test_a_third_party_output_is_added() -> None:
    with outputs.use_manager(_manager(qcow2=Qcow2, fancy=Fancy)):
        assert outputs.get("fancy").extension == "fancy"
        assert outputs.available()["qcow2"] is Qcow2
    assert "fancy" not in outputs.available()


def test_an_output_entry_point_that_is_not_a_plugin_is_refused() -> None:
    with pytest.raises(ConfigError, match="'bad'.*not a dibpy.outputs.base.OutputPlugin"):
        outputs.use_manager(_manager(bad=dict)).__enter__()
