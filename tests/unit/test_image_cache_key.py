"""The image cache's key: what only the image steps read changes it, what cannot change
the image does not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dibpy import imagecache
from dibpy.config import BuildConfig
from dibpy.elements.model import Element


def _element(tmp_path: Path) -> Element:
    el = tmp_path / "el"
    (el / "finalise.d").mkdir(parents=True)
    (el / "finalise.d" / "50-fin").write_text("#!/bin/bash\necho v1\n")
    return Element("el", el)


def _key(el: Element, cfg: BuildConfig, tree: str = "t1", layout: str = "- local_loop") -> str:
    return imagecache.image_key(imagecache.image_inputs(tree, [el], cfg, layout))


def test_image_inputs_change_the_key_and_build_plumbing_does_not(tmp_path: Path) -> None:
    el = _element(tmp_path)
    cfg = BuildConfig(elements=("el",), image_name=str(tmp_path / "out" / "img"))
    base = _key(el, cfg)
    assert base == _key(el, cfg)
    changed = {
        "the tree": _key(el, cfg, tree="t2"),
        "the block-device layout": _key(el, cfg, layout="- local_loop: {size: 3G}"),
        "the output types": _key(el, dataclasses.replace(cfg, image_types=("raw",))),
        "the output name": _key(el, dataclasses.replace(cfg, image_name=str(tmp_path / "o2"))),
        "the image size": _key(el, dataclasses.replace(cfg, image_size=4 << 30)),
        "a variable only the image steps read": _key(
            el, dataclasses.replace(cfg, environ={"DIB_QCOW2_COMPRESSION_TYPE": "zlib"})
        ),
    }
    (el.path / "finalise.d" / "50-fin").write_text("#!/bin/bash\necho v2\n")
    changed["a finalise.d hook"] = _key(el, cfg)
    for what, key in changed.items():
        assert key != base, what
    same = {
        "where it is written": dataclasses.replace(
            cfg, image_name=str(tmp_path / "elsewhere" / "img")
        ),
        "the cache's own settings": dataclasses.replace(
            cfg,
            no_tmpfs=True,
            tmp_dir=tmp_path,
            boot_test=True,
            environ={"DIB_IMAGE_CACHE": "/x", "DIB_TREE_CACHE_LAYERS": "0"},
        ),
    }
    (el.path / "finalise.d" / "50-fin").write_text("#!/bin/bash\necho v1\n")
    for what, c in same.items():
        assert _key(el, c) == base, what
