"""The tree cache's checkpoints in real builds of the tiny test OS: an edited post-install.d
hook re-runs the build from post-install.d on the tree restored as it was after install.d,
an edited install.d hook from install.d on the tree after pre-install.d, and the tree
holds the edit; an unchanged rebuild hits every checkpoint; two builds sharing
one cache at once both succeed and leave whole entries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, chroot_works, write

FIXTURES = REPO / "tests" / "fixtures" / "pipeline-elements"
DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


def _ran_hook(phase: str, tag: str) -> str:
    # each hook appends to one log in the tree: what a restored tree holds ran before it
    return f'#!/bin/bash\nset -eu\necho "{phase} {tag}" >> /var/log/ran\n'


@pytest.fixture
def elements(tmp_path: Path) -> Path:
    if chroot_works():
        pytest.skip(chroot_works() or "")
    dest = tmp_path / "elements"
    shutil.copytree(FIXTURES, dest, symlinks=True)
    el = dest / "ckpt"
    write(el / "README.rst", "ckpt\n====\nTest element.\n")
    write(el / "pre-install.d" / "50-ckpt-pre", _ran_hook("pre-install.d", "v1"), 0o755)
    # what extra-data.d leaves in the hook tree for the chroot phases (as package-installs'
    # lists are): a restored checkpoint must bring it back, the phases after it need it
    write(
        el / "extra-data.d" / "50-ckpt-data",
        '#!/bin/bash\nset -eu\nmkdir -p "$TMP_HOOKS_PATH/ckpt-data"\n'
        'echo from-extra-data > "$TMP_HOOKS_PATH/ckpt-data/note"\n'
        'rm "$TMP_HOOKS_PATH/ckpt-tools/gone"\n',
        0o755,
    )
    write(el / "ckpt-tools" / "gone", "merged, then removed by extra-data.d\n")
    write(
        el / "post-install.d" / "40-ckpt-needs-data",
        "#!/bin/bash\nset -eu\n"
        'test "$(cat /tmp/in_target.d/ckpt-data/note)" = from-extra-data\n'
        "test ! -e /tmp/in_target.d/ckpt-tools/gone\n",
        0o755,
    )
    write(el / "install.d" / "50-ckpt-install", _ran_hook("install.d", "v1"), 0o755)
    write(el / "post-install.d" / "50-ckpt-post", _ran_hook("post-install.d", "v1"), 0o755)
    return dest


def build(
    tmp_path: Path, elements: Path, name: str, **env: str
) -> tuple[dict[str, object], str, str]:
    """Build a tar of the tree: (tree cache record, /var/log/ran, log)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    if "DIB_TREE_CACHE_LAYERS" in os.environ:
        e["DIB_TREE_CACHE_LAYERS"] = os.environ["DIB_TREE_CACHE_LAYERS"]
    e.update(
        ELEMENTS_PATH=str(elements), TMP_DIR=str(tmp_path), DIB_IMAGE_CACHE=str(tmp_path / "cache")
    )
    e.update(env)
    out = tmp_path / "out" / name
    r = subprocess.run(
        [*DIC, "-n", "-o", str(out), "-t", "tar", "tiny-os", "ckpt"],
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((out.with_name(name + ".d") / "dibpy-build.json").read_text())
    with tarfile.open(out.with_name(name + ".tar")) as tf:
        f = tf.extractfile("./var/log/ran")
        assert f is not None
        ran = f.read().decode()
    tc = record["tree_cache"]
    assert isinstance(tc, dict)
    return tc, ran, r.stderr


def _hits(tc: dict[str, object]) -> dict[str, bool]:
    points = tc["checkpoints"]
    assert isinstance(points, list)
    return {str(p["after"]): bool(p["hit"]) for p in points}


@pytest.mark.parametrize("layers", ["1", "0"], ids=["layers", "tarballs"])
def test_an_edited_post_install_hook_reruns_from_post_install(
    tmp_path: Path, elements: Path, no_leaks: None, layers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIB_TREE_CACHE_LAYERS", layers)
    cold, ran, log = build(tmp_path, elements, "a")
    kept = {p.name.partition(".")[2] for p in (tmp_path / "cache" / "dibpy-trees").iterdir()}
    kept -= {"image", "image.json"}  # the outputs, for a rebuild of the same name
    # each checkpoint is kept in the form asked for (the overlay probe passes here: it is
    # what a layered build needs, and this host's kernel has overlayfs)
    assert kept == ({"layer", "layer.json"} if layers == "1" else {"tar.zst", "tar.json"})
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v1\n"
    assert not any(_hits(cold).values()), _hits(cold)
    assert "tree cache: miss after root.d: no earlier entry for these elements" in log

    hook = elements / "ckpt" / "post-install.d" / "50-ckpt-post"
    hook.write_text(_ran_hook("post-install.d", "v2"))
    edited, ran, log = build(tmp_path, elements, "b")
    # the tree as it was after install.d, then post-install.d again: the edit's effect,
    # and neither install.d again nor the old hook's
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v2\n", ran
    assert "tree cache: hit after install.d: reusing cached tree" in log, log[-3000:]
    assert (
        "tree cache: miss after post-install.d: post-install.d hook 50-ckpt-post of element "
        "ckpt changed" in log
    ), log[-3000:]
    assert "running install.d/50-ckpt-install" not in log
    assert _hits(edited) == {
        "root.d": True,
        "pre-install.d": True,
        "install.d": True,
        "post-install.d": False,
        "post-root.d": False,
    }
    assert edited["restored_after"] == "install.d" and edited["reused"] is False
    assert edited["miss"] == ["post-install.d hook 50-ckpt-post of element ckpt changed"]

    again, ran, log = build(tmp_path, elements, "c")
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v2\n"
    assert all(_hits(again).values()) and again["reused"] is True
    assert "tree cache: hit after post-root.d: reusing cached tree" in log

    # break= is in the key (a shell can change the tree): its builds have entries of their
    # own; and the restore stops before the break point, so that the point is reached
    brk = {"break": "after-post-install"}
    broken, _, log = build(tmp_path, elements, "c1", **brk)
    assert broken["restored_after"] is None
    assert "miss after root.d: variable break added" in log
    broken, ran, log = build(tmp_path, elements, "c2", **brk)
    assert broken["restored_after"] == "install.d"
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v2\n"
    assert "miss after post-install.d: break=after-post-install needs post-install.d to run" in log
    assert "break=after-post-install: stdin is not a terminal" in log

    # an install.d edit: the tree after pre-install.d, then install.d and everything after
    inst = elements / "ckpt" / "install.d" / "50-ckpt-install"
    inst.write_text(_ran_hook("install.d", "v2"))
    fresh, ran, log = build(tmp_path, elements, "d")
    assert ran == "pre-install.d v1\ninstall.d v2\npost-install.d v2\n"
    assert fresh["restored_after"] == "pre-install.d"
    assert "running pre-install.d/50-ckpt-pre" not in log
    assert "tree cache: miss after post-install.d: the tree after install.d is rebuilt" in log

    listed = subprocess.run(
        [sys.executable, str(REPO / "bin" / "dibpy"), "cache", "list"]
        + ["--image-cache", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # no post-root.d hook: the tree after post-install.d is the tree after post-root.d,
    # kept once
    for phase in ("root.d", "pre-install.d", "install.d", "post-install.d"):
        assert f"after {phase} " in listed, listed
    assert "after post-root.d" not in listed


def test_two_builds_sharing_one_cache_at_once(
    tmp_path: Path, elements: Path, no_leaks: None
) -> None:
    e = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    e.update(
        ELEMENTS_PATH=str(elements), TMP_DIR=str(tmp_path), DIB_IMAGE_CACHE=str(tmp_path / "cache")
    )
    procs = [
        subprocess.Popen(
            [*DIC, "-n", "-o", str(tmp_path / "out" / n), "-t", "tar", "tiny-os", "ckpt"],
            env=e,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in ("p", "q")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        assert "could not save" not in err
    trees = tmp_path / "cache" / "dibpy-trees"
    assert not list(trees.glob(".*partial*"))
    # whole entries: the next build restores the last and holds the same tree
    tc, ran, _ = build(tmp_path, elements, "r")
    assert tc["reused"] is True and ran == "pre-install.d v1\ninstall.d v1\npost-install.d v1\n"


def test_a_restored_layer_keeps_what_later_phases_removed_and_replaced(
    tmp_path: Path, elements: Path, no_leaks: None
) -> None:
    """With layers, a checkpoint holds only what its phases changed: a file removed after
    install.d (a whiteout), a directory replaced (an opaque one) and a hard link made must
    come back as they were when the tree is restored from the layers."""
    el = elements / "ckpt"
    write(
        el / "install.d" / "40-ckpt-files",
        "#!/bin/bash\nset -eu\nmkdir -p /srv/old /srv/keep\necho a > /srv/old/a\n"
        "echo gone > /srv/keep/gone\necho kept > /srv/keep/kept\n",
        0o755,
    )
    write(
        el / "post-install.d" / "40-ckpt-change",
        "#!/bin/bash\nset -eu\nrm /srv/keep/gone\nrm -r /srv/old\nmkdir /srv/old\n"
        "echo b > /srv/old/b\nln /srv/keep/kept /srv/keep/link\n",
        0o755,
    )
    env = {"DIB_TREE_CACHE_LAYERS": "1"}
    cold, _, cold_log = build(tmp_path, elements, "a", **env)
    assert not any(_hits(cold).values())
    # an unchanged rebuild is the whole tree from the layers (nothing run)
    again, ran, log = build(tmp_path, elements, "b", **env)
    assert again["reused"] is True, log[-2000:]
    # the restored tree's layers are in the cache (on disk) under the build's tmpfs upper:
    # sized as the tree it is, not only the part on the upper's filesystem
    sized = [re.search(r"tree is (\d+) MiB", t) for t in (cold_log, log)]
    assert all(sized) and len({m.group(1) for m in sized if m}) == 1, sized
    with tarfile.open(tmp_path / "out" / "b.tar") as tf:
        names = set(tf.getnames())
        link = tf.getmember("./srv/keep/link")
        assert (
            link.islnk()
            and link.linkname == "./srv/keep/kept"
            or (tf.getmember("./srv/keep/kept").islnk())
        ), (link.type, link.linkname)
    assert "./srv/keep/gone" not in names
    assert "./srv/old/a" not in names and "./srv/old/b" in names
    assert "./srv/keep/kept" in names


def test_an_unchanged_rebuild_of_the_same_image_copies_its_outputs(
    tmp_path: Path, elements: Path, no_leaks: None
) -> None:
    """The image cache: the same inputs and output name give the outputs kept last time,
    every phase skipped; an input only the image steps read (a finalise.d hook, the
    checksum files asked for) builds again; DIB_IMAGE_CACHE_OUTPUTS=0 always builds."""
    fin = elements / "ckpt" / "finalise.d" / "50-ckpt-fin"
    write(fin, _ran_hook("finalise.d", "v1"), 0o755)
    write(
        elements / "ckpt" / "install.d" / "45-ckpt-manifest",
        "#!/bin/bash\nmkdir -p /etc/dib-manifests\necho ckpt > /etc/dib-manifests/ckpt\n",
        0o755,
    )
    # the user's log beside -o (`-o out/img ... > out/img.log`): open while the build runs,
    # and written since it started, but not an output to keep and bring back
    (tmp_path / "out").mkdir()
    user_log = open(tmp_path / "out" / "img.log", "w")  # noqa: SIM115 - held on purpose
    user_log.write("the first build's log\n")
    user_log.flush()
    later = time.time() + 60
    os.utime(user_log.name, (later, later))
    cold, ran, log = build(tmp_path, elements, "img")
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v1\nfinalise.d v1\n"
    assert "image cache: not keeping img.log: a process has it open" in log
    entries = list((tmp_path / "cache" / "dibpy-trees").glob("*.image"))
    assert [sorted(p.name for p in e.iterdir()) for e in entries] == [["dib-manifests", "img.tar"]]
    first = (tmp_path / "out" / "img.tar").read_bytes()
    manifests = tmp_path / "out" / "img.d" / "dib-manifests"
    assert cold["image"] == {"key": cold["image"]["key"], "hit": False}  # type: ignore[index]

    shutil.rmtree(manifests.parent)  # the hit writes it again
    again, ran, log = build(tmp_path, elements, "img")
    assert "image cache: hit: reusing the outputs of an unchanged build" in log, log[-2000:]
    assert "running " not in log and "copy tree in" not in log
    assert again["image"]["hit"] is True and again["reused"] is True  # type: ignore[index]
    # the very file the first build wrote, and its manifests; the old one moved aside
    assert (tmp_path / "out" / "img.tar").read_bytes() == first
    assert (manifests / "ckpt").read_text() == "ckpt\n"
    assert len(list((tmp_path / "out").glob("img-*.tar"))) == 1
    user_log.close()
    assert (tmp_path / "out" / "img.log").read_text() == "the first build's log\n"

    # another name: another image (a format may name its own files)
    other, _, log = build(tmp_path, elements, "other")
    assert "image cache: hit" not in log and other["reused"] is True  # the tree is reused

    write(fin, _ran_hook("finalise.d", "v2"), 0o755)
    edited, ran, log = build(tmp_path, elements, "img")
    assert "image cache: hit" not in log
    assert ran == "pre-install.d v1\ninstall.d v1\npost-install.d v1\nfinalise.d v2\n", ran
    assert "tree cache: hit after post-root.d" in log

    sums, _, log = build(tmp_path, elements, "img", DIB_CHECKSUM="sha256")
    assert "image cache: hit" not in log and (tmp_path / "out" / "img.tar.sha256").is_file()
    (tmp_path / "out" / "img.tar.sha256").unlink()
    # ... and that image's checksum file comes back with it
    _, _, log = build(tmp_path, elements, "img", DIB_CHECKSUM="sha256")
    assert "image cache: hit" in log and (tmp_path / "out" / "img.tar.sha256").is_file()

    _, _, log = build(tmp_path, elements, "img", DIB_IMAGE_CACHE_OUTPUTS="0")
    assert "image cache: hit" not in log and "running finalise.d/50-ckpt-fin" in log
