"""doc/element-status.md is what bench/element_status.py writes today (the list of every
diskimage-builder 3.43 element and its status in dibpy), so it cannot go stale."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from tests.conftest import REPO
from tests.dibref import DIB_VERSION, dib_elements

SCRIPT = REPO / "bench" / "element_status.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("element_status", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_doc_is_current() -> None:
    text = load().render(dib_elements(), DIB_VERSION)
    committed = (REPO / "doc" / "element-status.md").read_text()
    assert committed == text, "doc/element-status.md is stale: run bench/element_status.py"


def test_every_diskimage_builder_element_has_a_row() -> None:
    mod = load()
    dib = dib_elements()
    text = mod.render(dib, DIB_VERSION)
    rows = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in text.splitlines()
            if ln.startswith("| ") and ln.count("|") == 4}  # fmt: skip
    names = mod.elements_in(dib)
    assert len(names) > 120
    assert set(names) <= set(rows)
    assert rows["dracut-network"] == "obsolete stub"
    assert rows["bootloader"] == "shipped"
    assert all(rows[n] in {"shipped", "obsolete stub", "renamed", "missing"} for n in names)


def test_check_mode_exit_status() -> None:
    dib = str(dib_elements())
    r = subprocess.run([sys.executable, str(SCRIPT), "--dib-elements", dib, "--check"],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
