"""The malformed-input corpus: what a careless or hostile user types, and what they see.

Each case runs a real command's entry point (disk-image-create's ``main()``, dibpy's, ...)
in this process, as a user would run it, and checks what the user gets: a non-zero exit,
exactly one error line that names the culprit (the option, variable, file, element or
YAML path), never a traceback, and nothing left behind (no file outside the inputs, an
empty TMP_DIR, no mount or loop device of ours).

Every case here must be refused while the build is planned: a build that starts fails
the test (``Build.run`` is replaced by a tripwire), so the corpus is fast and a regression
that lets bad input through to the build shows up as that.  Cases that need a real build
to start are in tests/integration/test_malformed_build_input.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dibpy.cli import block_device, diskimage_builder, element_info, lint, run_parts
from dibpy.cli import disk_image_create as dic
from dibpy.cli import main as dibpy_main
from dibpy.log import setup_logging
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"

MAINS: dict[str, Callable[[list[str]], int]] = {
    "disk-image-create": dic.main,
    "ramdisk-image-create": dic.ramdisk_main,
    "element-info": element_info.main,
    "dib-block-device": block_device.main,
    "dib-run-parts": run_parts.main,
    "dib-lint": lint.main,
    "diskimage-builder": diskimage_builder.main,
    "dibpy": dibpy_main.main,
}


@dataclass(frozen=True)
class Case:
    """``argv[0]`` is the command; ``{tmp}`` in argv, env and files is the case's directory;
    ``expect`` must be in the one error line (and ``also`` somewhere in the output)."""

    id: str
    argv: tuple[str, ...]
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    dirs: tuple[str, ...] = ()
    also: str = ""


def D(*args: str) -> tuple[str, ...]:
    """disk-image-create -n -o {tmp}/out/img ARGS (tiny-os is the fixture OS)."""
    return ("disk-image-create", "-n", "-o", "{tmp}/out/img", *args)


BD_OK = "- local_loop: {name: image0, size: 100MiB}\n"
BD_NOWHERE = "- mkfs: {name: m, base: nowhere, type: ext4}\n"

CASES: list[Case] = [
    # -- options -------------------------------------------------------------------
    Case("no-elements", ("disk-image-create",), "no elements given"),
    Case("unknown-flag", D("--frobnicate", "tiny-os"), "unrecognized arguments: --frobnicate"),
    Case("unknown-type", D("-t", "qcow3", "tiny-os"), "qcow3"),
    Case("unknown-arch", D("-a", "vax", "tiny-os"), "-a: unknown architecture 'vax'"),
    Case("image-size-word", D("--image-size", "lots", "tiny-os"), "--image-size: 'lots'"),
    Case("image-size-zero", D("--image-size", "0", "tiny-os"), "--image-size: '0'"),
    Case("extra-size-negative", D("--image-extra-size=-5", "tiny-os"), "--image-extra-size"),
    Case("online-resize-word", D("--max-online-resize", "x", "tiny-os"), "--max-online-resize"),
    Case("min-tmpfs-negative", D("--min-tmpfs=-1", "tiny-os"), "--min-tmpfs: '-1'"),
    Case("qemu-img-options", D("--qemu-img-options", "compat", "tiny-os"), "--qemu-img-options"),
    Case("install-type", D("--install-type", "both", "tiny-os"), "--install-type: 'both'"),
    Case("journal-size-word", D("--mkfs-journal-size", "big", "tiny-os"), "--mkfs-journal-size"),
    Case("root-label-too-long", D("--root-label", "x" * 17, "tiny-os"), "root label 'xxxx"),
    Case(
        "output-is-a-directory", D("tiny-os"), "-o {tmp}/out/img: is a directory", dirs=("out/img",)
    ),
    Case(
        "output-under-a-file",
        ("disk-image-create", "-n", "-o", "{tmp}/afile/img", "tiny-os"),
        "-o {tmp}/afile/img: {tmp}/afile is not a directory",
        files={"afile": "x\n"},
    ),
    Case(
        "output-manifest-dir-is-a-file",
        D("tiny-os"),
        "{tmp}/out/img.d",
        files={"out/img.d": "x\n"},
    ),
    Case(
        "overwrite-onto-a-directory",
        D("tiny-os"),
        "{tmp}/out/img.qcow2 is a directory",
        env={"OVERWRITE_OLD_IMAGE": "1"},
        dirs=("out/img.qcow2",),
    ),
    Case(
        "logfile-under-a-file",
        D("--logfile", "{tmp}/afile/log", "tiny-os"),
        "--logfile {tmp}/afile/log: {tmp}/afile is not a directory",
        files={"afile": "x\n"},
    ),
    Case(
        "logfile-is-a-directory",
        D("--logfile", "{tmp}/logs", "tiny-os"),
        "--logfile {tmp}/logs: is a directory",
        dirs=("logs",),
    ),
    Case(
        "boot-test-tar",
        D("-t", "tar", "--boot-test", "tiny-os"),
        "--boot-test needs a qcow2 or raw output",
    ),
    Case(
        "boot-test-no-final-image",
        D("--boot-test", "tiny-os", "no-final-image"),
        "--boot-test needs a qcow2 or raw output",
    ),
    Case(
        "ramdisk-no-elements",
        ("ramdisk-image-create", "-o", "{tmp}/out/r"),
        "no elements given",
    ),
    Case("element-info-no-args", ("element-info",), "the following arguments are required"),
    # -- variables ----------------------------------------------------------------
    Case("fs-type", D("tiny-os"), "FS_TYPE: 'ntfs'", env={"FS_TYPE": "ntfs"}),
    Case("tmp-dir-missing", D("tiny-os"), "TMP_DIR {tmp}/nope", env={"TMP_DIR": "{tmp}/nope"}),
    Case(
        "tmp-dir-a-file",
        D("tiny-os"),
        "TMP_DIR {tmp}/afile",
        env={"TMP_DIR": "{tmp}/afile"},
        files={"afile": "x\n"},
    ),
    Case(
        "overwrite-maybe", D("tiny-os"), "OVERWRITE_OLD_IMAGE", env={"OVERWRITE_OLD_IMAGE": "maybe"}
    ),
    Case("break-sideways", D("tiny-os"), "break: 'sideways'", env={"break": "sideways"}),
    Case("no-tmpfs-perhaps", D("tiny-os"), "DIB_NO_TMPFS", env={"DIB_NO_TMPFS": "perhaps"}),
    Case("debug-trace-word", D("tiny-os"), "DIB_DEBUG_TRACE", env={"DIB_DEBUG_TRACE": "x"}),
    Case("checksum-sha1", D("tiny-os"), "DIB_CHECKSUM: 'sha1'", env={"DIB_CHECKSUM": "sha1"}),
    Case("image-size-env", D("tiny-os"), "DIB_IMAGE_SIZE: 'big'", env={"DIB_IMAGE_SIZE": "big"}),
    Case(
        "tree-cache-age",
        D("tiny-os"),
        "DIB_TREE_CACHE_MAX_AGE",
        env={"DIB_TREE_CACHE_MAX_AGE": "forever"},
    ),
    Case(
        "release-garbage",
        D("tiny-os"),
        "environment variable DIB_RELEASE: 'bookworm; rm -rf /' is not a release name",
        env={"DIB_RELEASE": "bookworm; rm -rf /"},
    ),
    Case("release-path", D("tiny-os"), "DIB_RELEASE: '../x'", env={"DIB_RELEASE": "../x"}),
    Case(
        "release-space", D("tiny-os"), "DIB_RELEASE: 'book worm'", env={"DIB_RELEASE": "book worm"}
    ),
    Case("arch-env", D("tiny-os"), "ARCH: unknown architecture", env={"ARCH": "pdp11"}),
    # -- block-device YAML ----------------------------------------------------------
    Case(
        "bd-file-missing",
        D("tiny-os"),
        "DIB_BLOCK_DEVICE_CONFIG",
        env={"DIB_BLOCK_DEVICE_CONFIG": "file://{tmp}/nope.yaml"},
    ),
    Case(
        "bd-inline-not-yaml",
        D("tiny-os"),
        "block-device config (DIB_BLOCK_DEVICE_CONFIG): line 1: invalid YAML",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_loop: {name: [image0"},
    ),
    Case(
        "bd-file-not-yaml",
        D("tiny-os"),
        "block-device config ({tmp}/bd.yaml): line 3: invalid YAML",
        env={"DIB_BLOCK_DEVICE_CONFIG": "file://{tmp}/bd.yaml"},
        files={"bd.yaml": "- local_loop:\n    name: [image0\n"},
    ),
    Case(
        "bd-file-bad-key",
        D("tiny-os"),
        "block-device config ({tmp}/bd.yaml): config[0].local_loop.size",
        env={"DIB_BLOCK_DEVICE_CONFIG": "file://{tmp}/bd.yaml"},
        files={"bd.yaml": "- local_loop: {name: image0, size: [1]}\n"},
    ),
    Case(
        "bd-element-file-invalid",
        D("tiny-os", "disk"),
        "block-device config (element disk: {tmp}/elements/disk/block-device-default.yaml)",
        files={"elements/disk/block-device-default.yaml": BD_NOWHERE},
    ),
    Case(
        "bd-unknown-plugin",
        D("tiny-os"),
        "config[0]: unknown block-device plugin 'local_lop'",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_lop: {name: image0}"},
    ),
    Case(
        "bd-relative-mount-point",
        D("tiny-os"),
        "mount_point: 'srv' is not an absolute path",
        env={
            "DIB_BLOCK_DEVICE_CONFIG": BD_OK + "- mkfs: {name: fs, base: image0, type: ext4}\n"
            "- mount: {name: m, base: fs, mount_point: srv}\n"
        },
    ),
    Case(
        "bd-mount-point-dotdot",
        D("tiny-os"),
        "must not contain '..'",
        env={
            "DIB_BLOCK_DEVICE_CONFIG": BD_OK + "- mkfs: {name: fs, base: image0, type: ext4}\n"
            "- mount: {name: m, base: fs, mount_point: /../../etc}\n"
        },
    ),
    Case(
        "bd-partition-too-big",
        D("tiny-os"),
        "partition big does not fit",
        env={
            "DIB_BLOCK_DEVICE_CONFIG": BD_OK + "- partitioning:\n    base: image0\n"
            "    label: mbr\n    partitions: [{name: big, size: 1GiB}]\n"
        },
    ),
    Case(
        "bd-undefined-base",
        D("tiny-os"),
        "undefined node 'imag0' (did you mean 'image0'?)",
        env={"DIB_BLOCK_DEVICE_CONFIG": BD_OK + "- mkfs: {name: fs, base: imag0, type: ext4}\n"},
    ),
    Case(
        "bd-duplicate-name",
        D("tiny-os"),
        "duplicate name 'image0'",
        env={"DIB_BLOCK_DEVICE_CONFIG": BD_OK + BD_OK},
    ),
    Case(
        "bd-not-a-list",
        D("tiny-os"),
        "must be a non-empty list",
        env={"DIB_BLOCK_DEVICE_CONFIG": "local_loop: {name: image0}"},
    ),
    Case(
        "bd-label-too-long",
        D("tiny-os"),
        "label",
        env={
            "DIB_BLOCK_DEVICE_CONFIG": BD_OK
            + "- mkfs: {name: fs, base: image0, type: xfs, label: much-too-long-label}\n"
        },
    ),
    Case(
        "bd-mkfs-on-mkfs",
        D("tiny-os"),
        "'a' is a mkfs node (filesystem); mkfs needs a blockdev",
        env={
            "DIB_BLOCK_DEVICE_CONFIG": BD_OK + "- mkfs: {name: a, base: image0, type: ext4}\n"
            "- mkfs: {name: b, base: a, type: ext4}\n"
        },
    ),
    Case(
        "bd-bad-size",
        D("tiny-os"),
        "config[0].local_loop.size",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_loop: {name: image0, size: huge}"},
    ),
    Case(
        "bd-block-size",
        D("tiny-os"),
        "config[0].local_loop.block_size",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_loop: {name: image0, block_size: 1024}"},
    ),
    # -- elements -----------------------------------------------------------------
    Case("unknown-element", D("tiny-osx"), "tiny-osx", also="did you mean"),
    Case(
        "missing-dependency",
        D("tiny-os", "needy"),
        "not-there",
        files={"elements/needy/element-deps": "not-there\n"},
    ),
    Case(
        "duplicate-provider",
        D("tiny-os", "other-os"),
        "operating-system",
        files={"elements/other-os/element-provides": "operating-system\n"},
    ),
    Case(
        "element-deps-a-directory",
        D("tiny-os", "odd"),
        "element odd: {tmp}/elements/odd/element-deps is a directory",
        dirs=("elements/odd/element-deps",),
        files={"elements/odd/README.rst": "odd\n"},
    ),
    Case(
        "element-provides-a-directory",
        D("tiny-os", "odd"),
        "element odd: {tmp}/elements/odd/element-provides is a directory",
        dirs=("elements/odd/element-provides",),
        files={"elements/odd/README.rst": "odd\n"},
    ),
    Case(
        "package-installs-not-yaml",
        D("tiny-os", "package-installs", "pk"),
        "{tmp}/elements/pk/package-installs.yaml:3: invalid YAML",
        files={"elements/pk/package-installs.yaml": "curl:\n  phase: [install.d\n"},
    ),
    Case(
        "package-installs-a-list",
        D("tiny-os", "package-installs", "pk"),
        "element pk: package-installs.yaml must be a mapping",
        files={"elements/pk/package-installs.yaml": "- curl\n- wget\n"},
    ),
    Case(
        "package-installs-unknown-option",
        D("tiny-os", "package-installs", "pk"),
        "{tmp}/elements/pk/package-installs.yaml: package curl: unknown option phse",
        files={"elements/pk/package-installs.yaml": "curl:\n  phse: install.d\n"},
    ),
    Case(
        "package-installs-bad-phase",
        D("tiny-os", "package-installs", "pk"),
        "package curl: phase 'root.d' is not one of",
        files={"elements/pk/package-installs.yaml": "curl:\n  phase: root.d\n"},
    ),
    Case(
        "package-installs-bad-when",
        D("tiny-os", "package-installs", "pk"),
        "package curl: 'when: DIB_X' must be VAR=value",
        files={"elements/pk/package-installs.yaml": "curl:\n  when: DIB_X\n"},
    ),
    Case(
        "element-name-with-slash",
        D("tiny-os", "../elements/x"),
        "../elements/x",
    ),
    # -- the diskimage-builder YAML build file -------------------------------------
    Case(
        "yaml-file-missing",
        ("diskimage-builder", "{tmp}/nope.yaml"),
        "{tmp}/nope.yaml",
    ),
    Case(
        "yaml-malformed",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "{tmp}/b.yaml:3: invalid YAML: ",
        files={"b.yaml": "- imagename: x\n  elements: [tiny-os\n- imagename: y\n"},
    ),
    Case(
        "yaml-tab-indent",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "{tmp}/b.yaml:2: invalid YAML: ",
        files={"b.yaml": "- imagename: x\n\telements: [tiny-os]\n"},
    ),
    Case(
        "yaml-not-a-list",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "{tmp}/b.yaml",
        files={"b.yaml": "imagename: x\nelements: [tiny-os]\n"},
    ),
    Case(
        "yaml-unknown-key",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "elemnts",
        files={"b.yaml": "- imagename: x\n  elemnts: [tiny-os]\n"},
    ),
    Case(
        "yaml-elements-not-a-list",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "elements",
        files={"b.yaml": "- imagename: x\n  elements: 7\n"},
    ),
    # -- dibpy commands -------------------------------------------------------------
    Case("dibpy-unknown-command", ("dibpy", "bulid"), "unknown command 'bulid'", also="build"),
    Case("element-info-unknown", ("element-info", "tiny-osx"), "tiny-osx"),
    Case(
        "element-info-deps-a-directory",
        ("dibpy", "element-info", "odd"),
        "element odd: {tmp}/elements/odd/element-deps is a directory",
        dirs=("elements/odd/element-deps",),
        files={"elements/odd/README.rst": "odd\n"},
    ),
    Case(
        "block-device-params-missing",
        ("dib-block-device", "--params", "{tmp}/nope.yaml", "init"),
        "{tmp}/nope.yaml",
    ),
    Case(
        "block-device-params-not-yaml",
        ("dib-block-device", "--params", "{tmp}/p.yaml", "init"),
        "{tmp}/p.yaml",
        files={"p.yaml": "image-dir: [\n"},
    ),
    Case(
        "block-device-params-incomplete",
        ("dib-block-device", "--params", "{tmp}/p.yaml", "init"),
        "mount-base",
        files={"p.yaml": "image-dir: /x\nbuild-dir: /y\n"},
    ),
    Case("run-parts-missing-dir", ("dib-run-parts", "{tmp}/nope"), "{tmp}/nope"),
    Case("run-parts-a-file", ("dib-run-parts", "{tmp}/afile"), "{tmp}/afile", files={"afile": ""}),
    Case("lint-missing-dir", ("dib-lint", "{tmp}/nope"), "{tmp}/nope"),
    Case("boot-test-missing-image", ("dibpy", "boot-test", "{tmp}/nope.qcow2"), "{tmp}/nope.qcow2"),
    Case("dibpy-lint-a-file", ("dibpy", "lint", "{tmp}/afile"), "{tmp}/afile", files={"afile": ""}),
    Case("dibpy-build-alias-bad-type", ("dibpy", "build", "-t", "vdx", "tiny-os"), "vdx"),
    Case("dibpy-ramdisk-no-elements", ("dibpy", "ramdisk"), "no elements given"),
    Case(
        "dibpy-block-device-params-missing",
        ("dibpy", "block-device", "--params", "{tmp}/nope.yaml", "init"),
        "{tmp}/nope.yaml",
    ),
    Case("dibpy-run-parts-missing", ("dibpy", "run-parts", "{tmp}/nope"), "{tmp}/nope"),
    Case("element-info-bad-arch", ("element-info", "-a", "vax", "tiny-os"), "vax"),
    Case(
        "element-info-graph-under-a-file",
        ("element-info", "--graph", "{tmp}/afile/g.dot", "tiny-os"),
        "{tmp}/afile/g.dot",
        files={"afile": ""},
    ),
    Case("lint-unknown-rule", ("dib-lint", "--ignore", "NOSUCH", "{tmp}/elements"), "NOSUCH"),
    Case(
        "convert-missing-input",
        ("dibpy", "convert", "{tmp}/nope.raw", "{tmp}/o.qcow2"),
        "{tmp}/nope.raw",
    ),
    Case("info-missing-image", ("dibpy", "info", "{tmp}/nope.qcow2"), "{tmp}/nope.qcow2"),
    Case(
        "elements-path-a-file",
        D("tiny-os"),
        "ELEMENTS_PATH",
        env={"ELEMENTS_PATH": "{tmp}/afile"},
        files={"afile": ""},
    ),
    Case(
        "element-conflicts",
        D("tiny-os", "grumpy"),
        "grumpy",
        files={"elements/grumpy/element-conflicts": "tiny-os\n"},
    ),
    Case(
        "element-conflicts-a-directory",
        D("tiny-os", "odd"),
        "element odd: {tmp}/elements/odd/element-conflicts is a directory",
        dirs=("elements/odd/element-conflicts",),
        files={"elements/odd/README.rst": "odd\n"},
    ),
    Case(
        "bd-local-loop-escapes",
        D("tiny-os"),
        "config[0].local_loop.name: '../../escape' must be a plain file name",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_loop: {name: ../../escape, size: 100MiB}"},
    ),
    Case(
        "bd-local-loop-absolute",
        D("tiny-os"),
        "config[0].local_loop.name: '/abs/x'",
        env={"DIB_BLOCK_DEVICE_CONFIG": "- local_loop: {name: /abs/x, size: 100MiB}"},
    ),
    Case(
        "yaml-no-elements",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "image x: no elements",
        files={"b.yaml": "- imagename: x\n"},
    ),
    Case(
        "yaml-bad-arch",
        ("diskimage-builder", "{tmp}/b.yaml"),
        "vax",
        files={"b.yaml": "- imagename: x\n  arch: vax\n  elements: [tiny-os]\n"},
    ),
    Case(
        "block-device-bad-block-size",
        ("dib-block-device", "--params", "{tmp}/p.yaml", "init"),
        "DIB_BLOCK_SIZE: 'lots'",
        env={"DIB_BLOCK_SIZE": "lots"},
        files={"p.yaml": "image-dir: /x\nmount-base: /y\nbuild-dir: /z\n"},
    ),
]


def _sub(s: str, tmp: Path) -> str:
    return s.replace("{tmp}", str(tmp))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _our_loops(root: Path) -> list[str]:
    found = []
    for f in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if f.read_text().startswith(str(root)):
                found.append(f.parent.parent.name)
        except OSError:
            continue
    return found


def _our_mounts(root: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if ln.split()[1].startswith(str(root))]


class _BuildStarted(AssertionError):
    pass


def run_case(
    case: Case, tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    for k in list(os.environ):
        if k.startswith("DIB_") or k in ("ELEMENTS_PATH", "IMAGE_NAME", "FS_TYPE", "ARCH", "break"):
            monkeypatch.delenv(k)
    (tmp / "tmp").mkdir()
    (tmp / "elements").mkdir()
    for d in case.dirs:
        (tmp / d).mkdir(parents=True)
    for rel, text in case.files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_sub(text, tmp))
    for name in {rel.split("/")[1] for rel in case.files if rel.startswith("elements/")}:
        readme = tmp / "elements" / name / "README.rst"
        if not readme.exists():
            readme.write_text(f"{name}: a test element\n")
    env = {
        "ELEMENTS_PATH": f"{tmp}/elements:{FIXTURES}",
        "TMP_DIR": str(tmp / "tmp"),
        "DIB_IMAGE_CACHE": str(tmp / "cache"),
    }
    env.update({k: _sub(v, tmp) for k, v in case.env.items()})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp)

    def tripwire(self: object) -> None:
        raise _BuildStarted(f"{case.id}: the build started; the bad input got past the plan")

    monkeypatch.setattr("dibpy.build.Build.run", tripwire)
    before = _tree(tmp)
    setup_logging()  # a fresh handler on the captured stderr
    command, *args = (_sub(a, tmp) for a in case.argv)
    try:
        rc = MAINS[command](args)
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    left = _tree(tmp) - before
    assert _tree(tmp / "tmp") == set(), f"left in TMP_DIR: {_tree(tmp / 'tmp')}"
    assert not {p for p in left if not p.startswith("cache")}, f"left behind: {sorted(left)}"
    assert not _our_loops(tmp) and not _our_mounts(tmp)
    return rc, out + err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, text = run_case(case, tmp_path, monkeypatch, capsys)
    assert rc != 0, text
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if "error:" in ln.lower()]
    assert len(errors) == 1, f"want one error line, got:\n{text}"
    assert _sub(case.expect, tmp_path) in errors[0], text
    if case.also:
        assert case.also in text, text


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60 - 8  # with tests/integration/test_malformed_build_input.py's
    assert len({c.id for c in CASES}) == len(CASES)
