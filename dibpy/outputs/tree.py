"""Outputs made from the mounted final filesystem: tar, tgz, squashfs, docker.

The build calls :meth:`write_tree` while the image's filesystems are still mounted at
``root``; ``/proc`` and ``/sys`` are left empty, as in diskimage-builder.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from dibpy import progress, run
from dibpy.errors import ConfigError, DibpyError
from dibpy.outputs.base import OutputOptions, OutputPlugin, open_tar

#: directories whose contents never go into a tree output (kernel filesystems)
EXCLUDED = ("proc", "sys")
TAR_COMMON = [
    "--numeric-owner",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
    "--sparse",
    "--sort=name",
    "--anchored",
]


def tree_bytes(root: Path) -> int:
    """Bytes under ``root`` (one filesystem walk with du) for the progress display."""
    if not progress.enabled():
        return 0
    r = run.run(["du", "-s", "--block-size=1", str(root)], check=False, quiet=True)
    try:
        return int(r.stdout.split()[0])
    except (IndexError, ValueError):
        return 0


def top_level(root: Path) -> list[str]:
    names = sorted(os.listdir(root))
    if not names:
        raise DibpyError(f"the tree at {root} is empty: nothing to put in the output")
    return names


def tar_tree(root: Path, dest: Path, *, compress: str | None = None, prefix: str = "./") -> None:
    """tar ``root`` into ``dest``; entries are ``./NAME`` (``prefix='./'``) or ``NAME``."""
    argv = ["tar", "--create", "--file", str(dest), *TAR_COMMON]
    argv += [f"--exclude={prefix}{d}/*" for d in EXCLUDED]
    if compress:
        argv.append(f"--use-compress-program={compress}")
    argv += ["-C", str(root)]
    argv += ["."] if prefix == "./" else ["--", *top_level(root)]
    with progress.watch(
        dest.suffix.lstrip(".") or "tar", tree_bytes(root), progress.child_reading(str(dest))
    ):
        run.run(argv)


def list_tar(path: Path) -> list[str]:
    names: list[str] = []
    r = run.run(["tar", "--list", "--file", str(path)], on_line=names.append, check=False)
    if r.returncode != 0:
        raise DibpyError(
            f"{path} is not a readable tar archive (tar --list exit status {r.returncode}): "
            f"{r.stderr.strip()[-300:]}"
        )
    return names


def _expect_names(path: Path, names: list[str], expected: list[str] | None, prefix: str) -> None:
    if not names:
        raise DibpyError(f"{path} is empty")
    if expected is None:
        return
    have: set[str] = set()
    for n in names:
        # a directory counts as present when something inside it is
        parts = n.rstrip("/").split("/")
        have.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    missing = [e for e in expected if f"{prefix}{e}" not in have]
    if missing:
        raise DibpyError(f"{path} lacks {', '.join(missing[:5])} from the tree")


class Tar(OutputPlugin):
    name = "tar"
    extension = "tar"
    needs_tree = True
    programs = ("tar",)
    compress: str | None = None

    def __init__(self) -> None:
        self.expected: list[str] | None = None

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        self.expected = top_level(root)
        tar_tree(root, dest, compress=self.compressor(opts))

    def compressor(self, opts: OutputOptions) -> str | None:
        return None

    def check(self, dest: Path) -> None:
        _expect_names(dest, list_tar(dest), self.expected, "./")


class Tgz(Tar):
    name = "tgz"
    extension = "tgz"

    def compressor(self, opts: OutputOptions) -> str:
        gz = opts.environ.get("DIB_GZIP_BIN") or ("pigz" if run.which("pigz") else "gzip")
        return f"{gz} -9n"

    def validate(self, opts: OutputOptions) -> None:
        gz = opts.environ.get("DIB_GZIP_BIN")
        if gz and run.which(gz.split()[0]) is None:
            raise ConfigError(f"DIB_GZIP_BIN={gz}: no such program")

    def check(self, dest: Path) -> None:
        with open(dest, "rb") as f:
            if f.read(2) != b"\x1f\x8b":
                raise DibpyError(f"tgz output {dest} is not gzip-compressed")
        super().check(dest)


class Squashfs(OutputPlugin):
    name = "squashfs"
    # diskimage-builder names it NAME.squash
    extension = "squash"
    needs_tree = True
    programs = ("mksquashfs", "unsquashfs")
    COMPRESSORS = ("gzip", "xz", "lzo", "lz4", "zstd", "lzma")

    def __init__(self) -> None:
        self.expected: list[str] | None = None
        self.comp: str | None = None

    def _comp(self, opts: OutputOptions) -> str:
        comp = opts.environ.get("DIB_SQUASHFS_COMPRESSION", "xz")
        if comp not in self.COMPRESSORS:
            raise ConfigError(
                f"DIB_SQUASHFS_COMPRESSION={comp}: one of {', '.join(self.COMPRESSORS)}"
            )
        return comp

    def validate(self, opts: OutputOptions) -> None:
        self._comp(opts)

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        self.expected = top_level(root)
        self.comp = self._comp(opts)
        argv = ["mksquashfs", str(root), str(dest), "-noappend", "-comp", self.comp]
        argv += ["-no-progress", "-processors", str(os.cpu_count() or 1)]
        argv += ["-wildcards", "-e", *[f"{d}/*" for d in EXCLUDED]]
        with progress.watch("squashfs", tree_bytes(root), progress.child_reading(str(dest))):
            run.run(argv)

    def check(self, dest: Path) -> None:
        r = run.run(["unsquashfs", "-s", str(dest)], check=False)
        if r.returncode != 0:
            raise DibpyError(f"squashfs output {dest} has no valid superblock: {r.stderr.strip()}")
        if self.comp and f"Compression {self.comp}" not in r.stdout:
            raise DibpyError(f"squashfs output {dest} is not {self.comp}-compressed")
        names: list[str] = []
        r = run.run(["unsquashfs", "-l", str(dest)], on_line=names.append, check=False)
        if r.returncode != 0:
            raise DibpyError(f"squashfs output {dest} cannot be listed: {r.stderr.strip()}")
        names = [n for n in names if n.startswith("squashfs-root")]
        _expect_names(dest, names, self.expected, "squashfs-root/")


# docker image references: [registry[:port]/]path[:tag]
_REF = re.compile(
    r"^(?:(?P<registry>[a-zA-Z0-9.-]+(?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$"
)
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386", "armhf": "arm"}


def docker_tag(opts: OutputOptions) -> str:
    ref = opts.docker_target or opts.environ.get("DIB_DOCKER_TARGET", "")
    if not ref:
        base = re.sub(r"[^a-z0-9._-]+", "-", (opts.image_name or "image").lower()).strip("._-")
        ref = base or "image"
    m = _REF.match(ref)
    if not m:
        raise ConfigError(
            f"--docker-target {ref!r} is not a docker image reference",
            hint="e.g. myimage:latest or registry.example:5000/team/image:1.0 (lower case)",
        )
    return ref if m.group("tag") else f"{ref}:latest"


def split_tag(ref: str) -> tuple[str, str]:
    m = _REF.match(ref)
    assert m is not None
    tag = m.group("tag") or "latest"
    return ref[: len(ref) - len(tag) - 1] if m.group("tag") else ref, tag


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def docker_config(arch: str, diff_id: str, created: str) -> dict[str, Any]:
    return {
        "architecture": DOCKER_ARCH.get(arch, arch),
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created": created, "created_by": "dibpy", "comment": "the image tree"}],
    }


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(layer: Path, dest: Path, tag: str, arch: str) -> None:
    """Wrap one layer tar into a ``docker load`` archive at ``dest``."""
    diff_id = _hash_file(layer)
    now = datetime.datetime.now(datetime.UTC)
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    mtime = int(now.timestamp())
    config = json.dumps(docker_config(arch, diff_id, created), sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = f"{diff_id}/layer.tar"
    repo, t = split_tag(tag)
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]
    legacy = {"id": diff_id, "created": created, "os": "linux"}
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        dir_info = tarfile.TarInfo(diff_id)
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        dir_info.mtime = mtime
        tar.addfile(dir_info)
        _add_bytes(tar, f"{diff_id}/VERSION", b"1.0", mtime)
        _add_bytes(tar, f"{diff_id}/json", json.dumps(legacy).encode(), mtime)
        info = tarfile.TarInfo(layer_name)
        info.size = layer.stat().st_size
        info.mode = 0o644
        info.mtime = mtime
        with open(layer, "rb") as f:
            tar.addfile(info, f)
        _add_bytes(tar, config_name, config, mtime)
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode(), mtime)
        _add_bytes(tar, "repositories", json.dumps({repo: {t: diff_id}}).encode(), mtime)


def check_docker_archive(path: Path, expected: list[str] | None = None) -> dict[str, Any]:
    """Check what ``docker load`` needs: manifest, config, layers and their digests."""
    try:
        return _check_docker_archive(path, expected)
    except (tarfile.TarError, EOFError) as e:
        raise DibpyError(f"docker archive {path} is truncated or corrupt: {e}") from None


def _check_docker_archive(path: Path, expected: list[str] | None) -> dict[str, Any]:
    tar = open_tar(path, "r:*", "docker archive")

    def read(name: str) -> bytes:
        try:
            f = tar.extractfile(name)
        except KeyError:
            f = None
        if f is None:
            raise DibpyError(f"docker archive {path} lacks {name}")
        return bytes(f.read())

    def load(name: str) -> Any:
        try:
            return json.loads(read(name))
        except json.JSONDecodeError as e:
            raise DibpyError(f"docker archive {path}: {name} is not JSON: {e}") from None

    with tar:
        manifest = load("manifest.json")
        if not isinstance(manifest, list) or not manifest:
            raise DibpyError(f"docker archive {path}: manifest.json is not a list of images")
        for entry in manifest:
            if not isinstance(entry, dict) or not {"Config", "Layers"} <= set(entry):
                raise DibpyError(f"docker archive {path}: manifest entry lacks Config or Layers")
            for ref in entry.get("RepoTags") or []:
                if not isinstance(ref, str) or not _REF.match(ref):
                    raise DibpyError(f"docker archive {path}: bad tag {ref!r}")
            config = load(entry["Config"])
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            if (config.get("rootfs") or {}).get("type") != "layers":
                raise DibpyError(f"docker archive {path}: the config's rootfs is not 'layers'")
            if len(diff_ids) != len(entry["Layers"]):
                raise DibpyError(
                    f"docker archive {path}: {len(entry['Layers'])} layers but "
                    f"{len(diff_ids)} diff_ids in the config"
                )
            if not config.get("os") or not config.get("architecture"):
                raise DibpyError(f"docker archive {path}: the config lacks os or architecture")
            for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                try:
                    f = tar.extractfile(name)
                except KeyError:
                    f = None
                if f is None:
                    raise DibpyError(f"docker archive {path} lacks the layer {name}")
                h = hashlib.sha256()
                while chunk := f.read(4 * 1024 * 1024):
                    h.update(chunk)
                if f"sha256:{h.hexdigest()}" != diff_id:
                    raise DibpyError(
                        f"docker archive {path}: layer {name} does not match {diff_id}"
                    )
                f.seek(0)
                try:
                    with tarfile.open(fileobj=f, mode="r:") as lt:
                        names = lt.getnames()
                except tarfile.TarError as e:
                    raise DibpyError(
                        f"docker archive {path}: layer {name} is not a tar: {e}"
                    ) from None
                _expect_names(path, names, expected, "")
        return {"images": manifest}


class Docker(OutputPlugin):
    """A docker-archive tarball (``docker load -i``): one layer holding the whole tree."""

    name = "docker"
    extension = "docker.tar"
    needs_tree = True
    programs = ("tar",)

    def __init__(self) -> None:
        self.expected: list[str] | None = None

    def validate(self, opts: OutputOptions) -> None:
        docker_tag(opts)

    def write_tree(self, root: Path, dest: Path, opts: OutputOptions) -> None:
        tag = docker_tag(opts)
        self.expected = top_level(root)
        tmp = Path(tempfile.mkdtemp(prefix=".docker-", dir=dest.parent))
        try:
            layer = tmp / "layer.tar"
            tar_tree(root, layer, prefix="")
            write_docker_archive(layer, dest, tag, opts.arch)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def check(self, dest: Path) -> None:
        check_docker_archive(dest, self.expected)
