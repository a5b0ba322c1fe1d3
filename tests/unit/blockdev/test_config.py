"""Config reading: flattening, validation with YAML paths, the graph and its order."""

from __future__ import annotations

import json
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml

from dibpy.blockdev import BlockDeviceConfigError, BlockDeviceParams, load_config
from dibpy.blockdev.config import flatten
from dibpy.blockdev.plugin import CreateContext, Node
from dibpy.blockdev.registry import BUILTINS, plugins, test_manager, use_manager
from dibpy.errors import ConfigError, MultiError

from .conftest import CONFIGS, REPO


def problems_of(text: str, params: BlockDeviceParams) -> list[str]:
    with pytest.raises(BlockDeviceConfigError) as info:
        load_config(text, params, host_checks=False)
    assert isinstance(info.value, MultiError)
    return info.value.problems


def summary(cfg: Any) -> dict[str, tuple[str, list[str], dict[str, Any]]]:
    return {n: (node.plugin, node.bases, node.config) for n, node in cfg.nodes.items()}


def test_tree_and_graph_forms_are_the_same(params: BlockDeviceParams) -> None:
    tree = load_config((CONFIGS / "deep_tree.yaml").read_text(), params, host_checks=False)
    graph = load_config((CONFIGS / "deep_graph.yaml").read_text(), params, host_checks=False)
    assert summary(tree) == summary(graph)
    assert tree.order == graph.order
    assert sorted(tree.graph.edges) == sorted(graph.graph.edges)


def test_implicit_names_and_bases() -> None:
    data = yaml.safe_load((CONFIGS / "deep_tree.yaml").read_text())
    raws, problems = flatten(data, set(BUILTINS))
    assert problems == []
    got = {r.name: (r.plugin, r.config.get("base"), r.path) for r in raws}
    assert got["partitioning_image0"] == (
        "partitioning",
        "image0",
        "config[0].local_loop.partitioning",
    )
    assert got["mkfs_ESP"] == (
        "mkfs",
        "ESP",
        "config[0].local_loop.partitioning.partitions[0].mkfs",
    )
    assert got["mount_mkfs_ESP"][1] == "mkfs_ESP"
    assert got["fstab_mount_mkfs_ESP"][1] == "mount_mkfs_ESP"
    # partition children are lifted out of the partition entry
    table = next(r for r in raws if r.plugin == "partitioning")
    assert "mkfs" not in table.config["partitions"][0]


def test_order_is_deterministic_and_mounts_go_by_depth(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- partitioning:
    base: image0
    label: gpt
    partitions:
      - {name: zz_efi, type: EF00, size: 100MiB,
         mkfs: {type: vfat, mount: {mount_point: /boot/efi}}}
      - {name: aa_boot, size: 200MiB, mkfs: {type: ext4, label: boot, mount: {mount_point: /boot}}}
      - {name: root, size: 100%, mkfs: {name: mkfs_root, mount: {mount_point: /}}}
"""
    orders = {tuple(load_config(text, params, host_checks=False).order) for _ in range(5)}
    assert len(orders) == 1
    order = list(orders.pop())
    mounts = [n for n in order if n.startswith("mount_")]
    assert mounts == ["mount_mkfs_root", "mount_mkfs_aa_boot", "mount_mkfs_zz_efi"]
    # partitions come in table order
    assert order.index("zz_efi") < order.index("aa_boot") < order.index("root")


def test_every_schema_is_valid() -> None:
    files = sorted(
        (importlib_resources.files("dibpy.blockdev") / "schemas").iterdir(), key=lambda p: p.name
    )
    names = {Path(f.name).stem for f in files if f.name.endswith(".json")}
    assert names == set(BUILTINS)
    for f in files:
        jsonschema.Draft202012Validator.check_schema(json.loads(f.read_text()))


def test_shipped_layouts_validate(params: BlockDeviceParams) -> None:
    for layout in ("mbr", "gpt", "efi", "efi-lvm"):
        path = REPO / "elements" / f"block-device-{layout}" / "block-device-default.yaml"
        load_config(path.read_text(), params, host_checks=False, origin=str(path))
    for path in sorted((REPO / "doc" / "examples").glob("*.yaml")):
        load_config(path.read_text(), params, host_checks=False, origin=str(path))


def test_errors_are_all_reported_with_paths(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- mfks: {name: x, base: image0}
- mkfs: {name: a, base: image0}
  mount: {}
- partitioning:
    base: imag0
    label: gpt
    partitions:
      - {name: one, size: 8MiB}
      - {name: two, size: 8 XB}
"""
    problems = problems_of(text, params)
    assert "config[1]: unknown block-device plugin 'mfks' (did you mean 'mkfs'?)" in problems
    assert any(p.startswith("config[2]: a node must have exactly one plugin key") for p in problems)
    assert any(
        p.startswith("config[3].partitioning.base: undefined node 'imag0'")
        and "did you mean 'image0'" in p
        for p in problems
    )
    # a node's own checks run even when the graph is unsound
    assert "config[3].partitioning.partitions[1].size: '8 XB' has an unknown unit 'XB'" in problems
    assert len(problems) == 4


def test_semantic_errors_with_paths(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 100MiB}
- partitioning:
    base: image0
    label: gpt
    partitions:
      - {name: one, size: 60MiB, mkfs: {type: ext4, label: dup}}
      - {name: two, size: 60MiB, mkfs: {type: xfs, label: dup}}
      - {name: three, size: 1MiB, mkfs: {type: xfs, label: much-too-long-label}}
"""
    problems = problems_of(text, params)
    assert any(
        p.startswith("config[1].partitioning.partitions[1].size: partition two does not fit")
        for p in problems
    ), problems


def test_label_errors(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- partitioning:
    base: image0
    label: gpt
    partitions:
      - {name: one, size: 100MiB, mkfs: {type: ext4, label: dup}}
      - {name: two, size: 100MiB, mkfs: {type: xfs, label: dup}}
      - {name: three, size: 100MiB, mkfs: {type: xfs, label: much-too-long}}
      - {name: four, size: 100MiB, mkfs: {type: vfat, label: efi}}
      - {name: five, size: 100MiB, mkfs: {type: vfat, label: EFI}}
"""
    problems = problems_of(text, params)
    base = "config[1].partitioning.partitions"
    assert any(
        p.startswith(f"{base}[1].mkfs.label: filesystem label 'dup' is already used")
        for p in problems
    ), problems
    assert (
        f"{base}[2].mkfs.label: label 'much-too-long' is 13 characters; xfs allows at most 12"
        in problems
    )
    # vfat labels are upper-cased before comparing
    assert any(p.startswith(f"{base}[4].mkfs.label: filesystem label 'EFI'") for p in problems)
    assert len(problems) == 3


def test_duplicate_and_missing_names(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- local_loop: {name: image0, size: 1GiB}
- local_loop: {size: 1GiB}
- mkfs: {name: fs, base: image0, type: ext4, labl: x}
"""
    problems = problems_of(text, params)
    assert sorted(problems) == [
        "config[1].local_loop: duplicate name 'image0' (first defined at config[0].local_loop)",
        "config[2].local_loop: missing name",
    ]


def test_unknown_keys_are_warnings(params: BlockDeviceParams) -> None:
    # diskimage-builder ignores keys it does not know; so do we, but we say so
    text = """
- local_loop: {name: image0, size: 1GiB}
- mkfs:
    {name: fs, base: image0, type: ext4, labl: x, mount: {mount_point: /, fstab: {fck-passno: 1}}}
"""
    cfg = load_config(text, params, host_checks=False)
    assert cfg.warnings == [
        "config[1].mkfs.labl: unknown key, ignored (did you mean 'label'?)",
        "config[1].mkfs.mount.fstab.fck-passno: unknown key, ignored (did you mean 'fsck-passno'?)",
    ]
    assert cfg.nodes["fs"].label == "fs"


def test_a_schema_error_is_reported_once(params: BlockDeviceParams) -> None:
    # nothing built on the bad entry is reported as undefined
    text = """
- local_loop: {name: image0, size: 1GiB}
- partitioning:
    base: image0
    label: gpt
    partitions:
      - {name: root, size: [100%], mkfs: {name: mkfs_root, mount: {mount_point: /, fstab: {}}}}
- lvm:
    name: lvm
    pvs: [{name: pv, base: root}]
    vgs: [{name: vg, base: [pv]}]
    lvs: [{name: lv, base: vg, size: 1GiB}]
"""
    (problem,) = problems_of(text, params)
    assert problem.startswith("config[1].partitioning.partitions[0].size: [")


def test_schema_errors_have_paths(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: [1]}
- partitioning:
    base: image0
    label: bsd
    partitions:
      - {name: p, size: 1MiB, flags: [bootable]}
"""
    problems = problems_of(text, params)
    assert any(p.startswith("config[0].local_loop.size: [1] is not of type") for p in problems)
    assert any(p.startswith("config[1].partitioning.label: 'bsd' is not one of") for p in problems)
    assert any(p.startswith("config[1].partitioning.partitions[0].flags[0]:") for p in problems)


def test_base_kinds_are_checked(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- mount: {name: m, base: image0, mount_point: /}
"""
    (problem,) = problems_of(text, params)
    assert problem.startswith("config[1].mount.base: 'image0' is a local_loop node")


def test_cycle_is_named(params: BlockDeviceParams) -> None:
    text = """
- mkfs: {name: a, base: b, type: ext4}
- mkfs: {name: b, base: a, type: ext4}
"""
    problems = problems_of(text, params)
    assert any("cycle" in p for p in problems) or any("'a' is a mkfs" in p for p in problems)


def test_unparseable_yaml_names_the_line(params: BlockDeviceParams) -> None:
    with pytest.raises(BlockDeviceConfigError, match=r"line \d+: invalid YAML"):
        load_config("- local_loop: {name: [\n", params, host_checks=False, origin="x.yaml")


def test_root_params_merge(tmp_path: Path) -> None:
    text = (REPO / "elements/block-device-mbr/block-device-default.yaml").read_text()
    for fstype, label, want in (
        ("xfs", None, "img-rootfs"),
        ("ext4", None, "cloudimg-rootfs"),
        ("btrfs", "mine", "mine"),
    ):
        p = BlockDeviceParams(
            image_dir=tmp_path,
            mount_base=tmp_path,
            build_dir=tmp_path,
            root_fs_type=fstype,
            root_label=label,
            root_fs_opts=("-i", "4096"),
        )
        cfg = load_config(text, p, host_checks=False)
        root = cfg.nodes["mkfs_root"]
        assert root.config["type"] == fstype
        assert root.config["label"] == want
        assert root.config["opts"] == ["-i", "4096"]


def test_root_label_too_long_for_xfs(tmp_path: Path) -> None:
    text = (REPO / "elements/block-device-mbr/block-device-default.yaml").read_text()
    p = BlockDeviceParams(
        image_dir=tmp_path,
        mount_base=tmp_path,
        build_dir=tmp_path,
        root_fs_type="xfs",
        root_label="cloudimg-rootfs",
    )
    (problem,) = problems_of(text, p)
    assert "xfs allows at most 12" in problem


class Thing(Node):
    plugin: ClassVar[str] = "thing"
    kind: ClassVar[str] = "blockdev"
    base_kinds: ClassVar[tuple[str, ...]] = ("blockdev",)

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {"name": {}, "base": {}, "level": {}},
            "additionalProperties": False,
        }

    def create(self, ctx: CreateContext) -> None:
        ctx.publish(self.name, device="/dev/thing")


def test_third_party_plugin(params: BlockDeviceParams) -> None:
    text = """
- local_loop: {name: image0, size: 1GiB}
- thing: {name: t, base: image0, level: 3}
- mkfs: {name: fs, base: t, type: ext4}
"""
    with pytest.raises(BlockDeviceConfigError, match="unknown block-device plugin 'thing'"):
        load_config(text, params, host_checks=False)
    with use_manager(test_manager({"thing": Thing})):
        cfg = load_config(text, params, host_checks=False)
        assert cfg.order == ["image0", "t", "fs"]
        assert "thing" in plugins()


def test_a_non_plugin_class_is_rejected() -> None:
    mgr = test_manager({"bad": dict})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="is not a dibpy.blockdev.plugin.Node"):
        use_manager(mgr).__enter__()


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs/x", "x\0y", ""])
def test_a_local_loop_name_that_would_leave_the_image_dir_is_refused(
    params: BlockDeviceParams, name: str
) -> None:
    # the name becomes the file <image dir>/<name>.raw: it must stay a plain file name
    text = yaml.safe_dump([{"local_loop": {"name": name, "size": "100MiB"}}])
    problems = problems_of(text, params)
    assert any(p.startswith("config[0].local_loop.name: ") for p in problems), problems


def test_a_plain_local_loop_name_is_accepted(params: BlockDeviceParams) -> None:
    cfg = load_config("- local_loop: {name: my-disk.v1, size: 100MiB}", params, host_checks=False)
    assert cfg.nodes["my-disk.v1"].image_path.parent == params.image_dir  # type: ignore[attr-defined]
