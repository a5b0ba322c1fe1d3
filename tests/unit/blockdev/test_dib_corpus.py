"""diskimage-builder 3.43's own block-device configs, read by dibpy and by DIB itself.

Every file in DIB's ``block_device/tests/config/``, the variants DIB's tests build from
them, and every ``block-device-*.yaml`` its elements ship, are given to DIB's parser
(its ``config_tree_to_graph``, the root-fs merge of ``cmd_init``, and ``create_graph``,
run from the unpacked wheel in a subprocess) and to dibpy's ``load_config``.  Then:

* both accept or both reject; a rejection is translated from DIB's message to the
  located dibpy problem that must say the same thing;
* accepted: the flattened graph form is the same (as DIB's tests compare it), the node
  sets are the same (less dibpy's partition-table nodes), dibpy's creation order obeys
  every edge of DIB's graph, and every dibpy edge is a path in DIB's graph;
* for LVM, the pvcreate/vgcreate/lvcreate commands are DIB's (its LVMNode run with
  exec_sudo mocked, against fake devices); nothing is executed here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml

from dibpy.blockdev import BlockDeviceConfigError, BlockDeviceParams, load_config
from dibpy.blockdev.config import flatten
from dibpy.blockdev.plugins.lvm import Lvm
from dibpy.blockdev.plugins.partitioning import Partitioning
from dibpy.blockdev.registry import plugins

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from dibref import dib_block_device_configs, dib_elements, dib_release  # noqa: E402

#: configs that need DIB's test-only plugins (test_a/test_b); run below through dibcompat
NEEDS_DIB_TEST_PLUGINS = {"cmd_create.yaml", "rollback.yaml"}

ORACLE = r"""
import json, sys, types
from unittest import mock
from diskimage_builder.block_device.blockdevice import BlockDevice
from diskimage_builder.block_device.config import config_tree_to_graph, create_graph
from diskimage_builder.block_device.level1.lvm import LVMNode

out = []
for case in json.load(sys.stdin):
    res = {"id": case["id"]}
    try:
        flat = config_tree_to_graph(case["config"])
        res["flat"] = json.loads(json.dumps(flat))
        holder = types.SimpleNamespace(config=flat, params=case["params"])
        BlockDevice._merge_rootfs_params(holder)
        state = {}
        graph, order = create_graph(flat, case["params"], state)
        res["nodes"] = sorted(graph.nodes)
        res["edges"] = sorted([list(e) for e in graph.edges])
        res["order"] = [n.name for n in order]
        lvm = [n for n in order if isinstance(n, LVMNode)]
        if lvm:
            state["blockdev"] = {}
            for node in lvm:
                for pv in node.pvs:
                    state["blockdev"][pv.base] = {"device": "/dev/fake/" + pv.base}
            with mock.patch("diskimage_builder.block_device.level1.lvm.exec_sudo") as m:
                for node in lvm:
                    node.create()
            res["lvm"] = [list(c.args[0]) for c in m.call_args_list]
        res["ok"] = True
    except Exception as e:  # DIB raises BlockDeviceSetupException, KeyError, ...
        res["ok"] = False
        res["error"] = "%s: %s" % (type(e).__name__, e)
    out.append(res)
json.dump(out, sys.stdout)
"""

PARAMS = {
    "build-dir": "/fake",
    "image-dir": "/fake",
    "mount-base": "/fake",
    "image-size": "1000",
    "root-fs-type": "ext4",
    "root-label": None,
}


def _cases() -> list[tuple[str, Any]]:
    """(id, parsed config) for every corpus file, DIB's test variants, element layouts."""
    cfg_dir = dib_block_device_configs()
    out: list[tuple[str, Any]] = []
    for path in sorted(cfg_dir.glob("*.yaml")):
        if path.name not in NEEDS_DIB_TEST_PLUGINS:
            out.append((path.name, yaml.safe_load(path.read_text())))
    # the variants test_lvm.py builds
    lvm_graph = yaml.safe_load((cfg_dir / "lvm_graph.yaml").read_text())
    bad = copy.deepcopy(lvm_graph)
    bad[2]["lvm"]["vgs"][0]["base"] = ["invalid_pv"]
    out.append(("lvm_graph.yaml:vgs-base-invalid_pv", bad))
    bad = copy.deepcopy(lvm_graph)
    bad[2]["lvm"]["lvs"][0]["base"] = ["invalid_vg"]
    out.append(("lvm_graph.yaml:lvs-base-invalid_vg", bad))
    bad = copy.deepcopy(lvm_graph)
    del bad[2]["lvm"]["lvs"][0]["size"]
    out.append(("lvm_graph.yaml:lvs-no-size", bad))
    thin = yaml.safe_load((cfg_dir / "lvm_tree_thin_provision.yaml").read_text())
    thin[2]["lvm"]["lvs"][0]["type"] = "thin-pol"
    out.append(("lvm_tree_thin_provision.yaml:type-thin-pol", thin))
    # a table may share its name with a partition: DIB's tables are not graph nodes
    same = yaml.safe_load((cfg_dir / "deep_graph.yaml").read_text())
    same[1]["partitioning"]["name"] = "root"
    out.append(("deep_graph.yaml:table-named-like-its-partition", same))
    for path in sorted(dib_elements().glob("block-device-*/block-device-*.yaml")):
        out.append((f"elements/{path.parent.name}/{path.name}", yaml.safe_load(path.read_text())))
    # dibpy's own element layouts, read by DIB's parser too
    ours = Path(__file__).resolve().parents[3] / "elements"
    for path in sorted(ours.glob("block-device-*/block-device-*.yaml")):
        out.append((f"ours/{path.parent.name}/{path.name}", yaml.safe_load(path.read_text())))
    return out


_oracle_cache: dict[str, dict[str, Any]] = {}


def oracle() -> dict[str, dict[str, Any]]:
    if not _oracle_cache:
        cases = [{"id": i, "config": c, "params": PARAMS} for i, c in _cases()]
        env = dict(os.environ, PYTHONPATH=str(dib_release()))
        r = subprocess.run(
            [sys.executable, "-c", ORACLE],
            input=json.dumps(cases),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        _oracle_cache.update({res["id"]: res for res in json.loads(r.stdout)})
    return _oracle_cache


def case_ids() -> list[str]:
    try:
        return [i for i, _ in _cases()]
    except pytest.skip.Exception:
        return ["diskimage-builder-unavailable"]


#: DIB's error message -> what dibpy's located problem must contain
TRANSLATIONS: list[tuple[str, str]] = [
    (r"Config entry is not a plugin value: \{'(\w+)'", r"unknown block-device plugin '\1'"),
    (r"Config entry top-level should be a single dict", r"exactly one plugin key"),
    (r"Edge not defined: (.+)->(.+)$", r"undefined node '(\1|\2)'"),
    (r"Duplicate node name: (.+)$", r"duplicate name '\1'"),
    (r"File system label \[(.+)\] used more than once", r"filesystem label '\1' is already used"),
    (
        r"Label \[(.+)\] too long for filesystem \[(\w+)\]",
        r"label '\1' is [0-9]+ characters; \2 allows at most",
    ),
    (
        r"base:(\w+) in vgs does not match a valid pvs",
        r"[.]vgs.[0-9]+.[.]base: undefined node '\1'",
    ),
    (
        r"base:\[.*\] in lvs does not match a valid vg",
        r"[.]lvs.[0-9]+.[.]base: .* is not of type",
    ),
    (r"Missing 'size' or 'extents' in lvs config", r"[.]lvs.[0-9]+.: missing size or extents"),
    (
        r"Unsupported type:([\w-]+), supported types",
        r"[.]lvs.[0-9]+.[.]type: '\1' is not one of",
    ),
]


def expected_problem(dib_error: str) -> str:
    for pattern, want in TRANSLATIONS:
        m = re.search(pattern, dib_error)
        if m:
            return m.expand(want)
    raise AssertionError(f"no translation for diskimage-builder's error {dib_error!r}")


def dibpy_params(tmp_path: Path) -> BlockDeviceParams:
    # as at `init`: the image size is not known yet
    return BlockDeviceParams(image_dir=tmp_path, mount_base=tmp_path, build_dir=tmp_path)


@pytest.mark.parametrize("case", case_ids())
def test_dib_corpus(case: str, tmp_path: Path) -> None:
    config = dict(_cases())[case]
    want = oracle()[case]
    # dibpy's shipped layouts must be good ones, not just rejected alike
    assert want["ok"] or not case.startswith("ours/"), want.get("error")
    if not want["ok"]:
        with pytest.raises(BlockDeviceConfigError) as info:
            load_config(copy.deepcopy(config), dibpy_params(tmp_path), host_checks=False)
        pattern = expected_problem(want["error"])
        problems = info.value.problems
        assert any(re.search(pattern, p) for p in problems), (want["error"], problems)
        # one defect, one problem: nothing built on it is reported again
        assert all(re.match(r"^config\[\d+\]", p) for p in problems), problems
        return

    cfg = load_config(copy.deepcopy(config), dibpy_params(tmp_path), host_checks=False)

    # the graph form, as DIB's tests compare it (assertCountEqual)
    raws, problems = flatten(copy.deepcopy(config), set(plugins()))
    assert problems == []
    mine = sorted(json.dumps({r.plugin: r.config}, sort_keys=True) for r in raws)
    theirs = sorted(json.dumps(e, sort_keys=True) for e in want["flat"])
    assert mine == theirs

    # the same nodes (dibpy's partition tables are nodes of their own; DIB's are not)
    tables = {n for n, node in cfg.nodes.items() if isinstance(node, Partitioning)}
    assert sorted(set(cfg.nodes) - tables) == want["nodes"]

    # dibpy's order obeys DIB's graph, and dibpy adds no ordering DIB does not have
    pos = {n: i for i, n in enumerate(cfg.order)}
    for a, b in want["edges"]:
        assert pos[a] < pos[b], f"{a} must come before {b}"
    dib_graph = nx.DiGraph([tuple(e) for e in want["edges"]])
    dib_graph.add_nodes_from(want["nodes"])
    for a, b in cfg.graph.edges:
        if a in tables or b in tables:
            continue
        assert nx.has_path(dib_graph, a, b), f"dibpy orders {a} before {b}; DIB does not"

    if "lvm" in want:
        lvms = [n for n in cfg.nodes.values() if isinstance(n, Lvm)]
        devices = {b: f"/dev/fake/{b}" for n in lvms for b in n.bases}
        assert [argv for n in lvms for argv in n.plan(devices)] == want["lvm"]


def test_element_layouts_are_all_covered() -> None:
    shipped = sorted(dib_elements().glob("block-device-*/block-device-*.yaml"))
    assert len(shipped) >= 7
    ids = set(case_ids())
    for path in shipped:
        assert f"elements/{path.parent.name}/{path.name}" in ids


def test_every_corpus_file_is_a_case() -> None:
    files = {p.name for p in dib_block_device_configs().glob("*.yaml")}
    assert files - NEEDS_DIB_TEST_PLUGINS <= set(case_ids())
    assert len(files) == 23


DIB_PLUGIN_RUN = r"""
import json, sys
from contextlib import ExitStack
from pathlib import Path
import yaml
from dibpy.blockdev import BlockDevice, BlockDeviceParams, load_config
from dibpy.blockdev import dibcompat
from dibpy.blockdev.registry import test_manager, use_manager
from dibpy.blockdev.state import Journal
from diskimage_builder.block_device.tests.plugin.test_a import TestA
from diskimage_builder.block_device.tests.plugin.test_b import TestB

path, tmp, rollback = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
if rollback:
    plain = dibcompat.dib_defaults
    dibcompat.dib_defaults = lambda p: dict(plain(p), test_rollback=True)
params = BlockDeviceParams(image_dir=tmp, mount_base=tmp, build_dir=tmp)
out = {}
with use_manager(test_manager({"test_a": TestA, "test_b": TestB})):
    cfg = load_config(Path(path).read_text(), params, host_checks=False)
    out["order"] = cfg.order
    state = next(iter(cfg.nodes.values())).state
    bd = BlockDevice(cfg, params, journal=Journal(None))
    try:
        with ExitStack() as stack:
            bd.create(stack)
            out["state"] = {k: v for k, v in state.items() if k != "blockdev"}
    except RuntimeError as e:
        out["error"] = str(e)
    out["final"] = {k: v for k, v in state.items() if k != "blockdev"}
json.dump(out, sys.stdout)
"""


def _run_dib_plugins(name: str, tmp_path: Path, rollback: bool) -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{dib_release()}")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            DIB_PLUGIN_RUN,
            str(dib_block_device_configs() / name),
            str(tmp_path),
            "1" if rollback else "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_dib_plugins_run_unchanged(tmp_path: Path) -> None:
    # cmd_create.yaml with diskimage-builder's own test plugins, as its test_state.py
    out = _run_dib_plugins("cmd_create.yaml", tmp_path, rollback=False)
    assert out["order"] == ["test_node_a", "test_node_b"]
    assert out["state"] == {
        "test_a": {"value": "foo", "value2": "bar"},
        "test_b": {"value": "baz"},
        "test_init_state": "here",
    }
    # teardown runs umount in reverse order
    assert out["final"]["umount"] == ["test_b", "test_a"]


def test_dib_plugin_rollback_order(tmp_path: Path) -> None:
    # rollback.yaml: the last node fails; every node rolls back, last first
    out = _run_dib_plugins("rollback.yaml", tmp_path, rollback=True)
    assert out["error"] == "Rollback triggered"
    assert out["final"]["rollback_test"] == [
        "never", "gonna", "give", "you", "up", "never", "gonna", "let", "you", "down",
    ]  # fmt: skip
