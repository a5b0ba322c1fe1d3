"""The installed-tree cache: reuse the tree of an unchanged build, or of its first phases.

The tree is kept at checkpoints, after root.d, pre-install.d, install.d, post-install.d and
post-root.d
(``model.PHASE_TABLE``): as overlayfs layers where the kernel allows (each checkpoint the
directory of what its phases changed, :mod:`dibpy.treelayers`; ``DIB_TREE_CACHE_LAYERS=0``
turns them off), else as tarballs (tar + zstd, the whole tree); each under a hash of its
predecessor's key and what
the phases since it read (:func:`checkpoints`); a later build restores the latest
checkpoint whose key it finds and runs only the phases after it (doc/building.md,
"Checkpoints").  A cached tree is reused only when a fresh build would make the same
tree, so the keys cover (doc/building.md, "What the tree cache key covers"):

* every file of every element in the build (path, mode, content, symlink target), except
  what only runs later (block-device.d, pre-finalise.d, finalise.d, cleanup.d, the
  block-device-*.yaml layouts) and READMEs; the files of a tree phase's directory count
  from that phase's checkpoint (:func:`hook_inputs`), the rest from the first;
* dibpy's version and its shell library ($_LIB);
* the build settings: architecture, -p packages, install type, release, mirror;
* every environment variable a hook can see, except a short list that cannot change the
  tree (``_IGNORED_HOST_VARS``, ``_IGNORED_VARS``, ``DIB_TREE_CACHE_IGNORE_VARS``); values
  are hashed, never stored; a variable naming a file (``DIB_LOCAL_IMAGE``) also brings in
  the file's sha256;
* what each source-repository entry resolves to now (:mod:`dibpy.sourcerepos`);
* the package archive's state for apt-based builds (:mod:`dibpy.archivestate`);
* what an element declares in ``tree-cache-inputs`` (URLs, files its hooks fetch).

Each input's fingerprint is stored in the entry's metadata, so a miss can name the input
that changed compared with the newest entry for the same elements.

Reuse is bounded and visible: it is logged with the entry's age, recorded in the build
record, refused past ``DIB_TREE_CACHE_MAX_AGE`` (default 24h; ``0`` disables reuse), and
switched off by ``--no-cache``.  Entries are written atomically (temporary name, rename)
and pruned to the newest few per element set and checkpoint; a layer a build has mounted
is held (a shared lock on its metadata) and is never removed under it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dibpy import __version__, archivestate, run, sourcerepos
from dibpy.elements.model import PACKAGES_PHASE, TREE_PHASES, Element, tree_segments
from dibpy.errors import ConfigError, DibpyError
from dibpy.hookenv import CLEAR_ENV_KEEPS

LOG = logging.getLogger("dibpy")

#: bump when the pipeline's tree phases change meaning
FORMAT = 2
#: element parts that only matter after the tree is cached
LATE_PARTS = (
    "block-device.d",
    "pre-finalise.d",
    "finalise.d",
    "cleanup.d",
    "tests",
    "test-elements",
)
#: phase directories counted by the checkpoint after them, not with the element's other files
_TREE_PHASE_DIRS = frozenset(p.name for p in TREE_PHASES)
#: variables that cannot change the tree
_IGNORED_VARS = re.compile(
    r"^DIB_(IMAGE_CACHE|OFFLINE|DEBUG_TRACE|TREE_CACHE_MAX_AGE|CHECKSUM|QEMU_IMG_OPTIONS|"
    r"(QCOW2|VHD|VHDX|VMDK|OVA|VMMGR|DOCKER|TAR|SQUASHFS)_.*|NO_TMPFS|MIN_TMPFS|"
    r"BLOCK_DEVICE_PARAMS_YAML|ARGS|ENV|TREE_CACHE_IGNORE_VARS|TREE_CACHE_LAYERS)$"
)
#: host and session variables a hook can see but that cannot change the tree: terminal,
#: login session and shell bookkeeping; variables dibpy sets itself for every hook; and
#: ELEMENTS_PATH (the elements' contents are in the key)
_IGNORED_HOST_VARS = re.compile(
    r"^(TERM|COLORTERM|COLUMNS|LINES|LS_COLORS|PWD|OLDPWD|SHLVL|_|PS[1-4]|PROMPT_COMMAND|"
    r"HIST[A-Z]*|MAIL|MAILPATH|SSH_[A-Z_]*|DISPLAY|WAYLAND_DISPLAY|XAUTHORITY|XDG_[A-Z_]*|"
    r"DBUS_SESSION_BUS_ADDRESS|TMUX|TMUX_PANE|STY|WINDOW|INVOCATION_ID|JOURNAL_STREAM|"
    r"PYTEST_CURRENT_TEST|TMPDIR|TMP_DIR|ELEMENTS_PATH|VIRTUAL_ENV|PYTHONPATH|PYTHONHOME|"
    r"TARGET_ROOT|TMP_MOUNT_PATH|TMP_HOOKS_PATH|TMP_BUILD_DIR|TMP_IMAGE_DIR|TMP_IMAGE_PATH|"
    r"IMAGE_NAME|IMAGE_ELEMENT|IMAGE_ELEMENT_YAML|ARCH|BASH_FUNC_.*)$"
)
DEFAULT_MAX_AGE = 24 * 3600
#: entries kept per element set and checkpoint
KEEP_PER_SET = 3


def _hash_element(h: hashlib._Hash, el: Element) -> None:
    for root, dirs, files in os.walk(el.path):
        dirs.sort()
        rel_root = Path(root).relative_to(el.path)
        if rel_root.parts and (
            rel_root.parts[0] in LATE_PARTS or rel_root.parts[0] in _TREE_PHASE_DIRS
        ):
            dirs[:] = []
            continue
        for name in sorted(files + [d for d in dirs if (Path(root) / d).is_symlink()]):
            p = Path(root) / name
            rel = (rel_root / name).as_posix()
            if not rel_root.parts and (
                name.startswith("README") or re.match(r"block-device-.*\.yaml$", name)
            ):
                continue
            if p.is_symlink():
                h.update(f"link {rel} {os.readlink(p)}\n".encode())
                continue
            mode = "x" if os.access(p, os.X_OK) else "-"
            h.update(f"file {rel} {mode}\n".encode())
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)


def _hash_dir(h: hashlib._Hash, d: Path) -> None:
    for p in sorted(d.rglob("*")):
        if p.is_symlink():
            h.update(f"link {p.relative_to(d)} {os.readlink(p)}\n".encode())
        elif p.is_file():
            h.update(f"file {p.relative_to(d)} {'x' if os.access(p, os.X_OK) else '-'}\n".encode())
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)


#: variables whose fingerprints (kept in the cache's metadata) must resist guessing
_SECRET = re.compile(r"PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|_KEY$|CREDENTIAL", re.I)


def _secret_hash(value: str) -> str:
    # slow on purpose: the metadata is readable by whoever can read the cache
    return hashlib.scrypt(value.encode(), salt=b"dibpy tree cache", n=1 << 14, r=8, p=1)[:12].hex()


def _short(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def tree_key(
    elements: Iterable[Element],
    settings: Mapping[str, str],
    environ: Mapping[str, str],
    lib_dir: Path,
) -> str:
    """The content hash of everything that makes the tree (see the module docstring)."""
    return key_of(tree_inputs(elements, settings, environ, lib_dir))


def key_of(inputs: Mapping[str, str]) -> str:
    """The cache key: a hash of every input's fingerprint."""
    h = hashlib.sha256(f"dibpy {__version__} tree format {FORMAT}\n".encode())
    for k, v in sorted(inputs.items()):
        h.update(f"{k}\0{v}\n".encode())
    return h.hexdigest()


def tree_inputs(
    elements: Iterable[Element],
    settings: Mapping[str, str],
    environ: Mapping[str, str],
    lib_dir: Path,
    *,
    clear_env: bool = False,
    cache_dir: Path | None = None,
    offline: bool = False,
    archive: Sequence[tuple[str, str, str]] | None = None,
) -> dict[str, str]:
    """Every input that shapes the tree, by name, with a fingerprint of its value.

    ``archive``: the package archive's state already read
    (:func:`dibpy.archivestate.archive_state`), so it is not fetched twice.

    The names are what a miss reports (``variable FOO``, ``element probe``, ``source
    repository agent``); variable values are hashed, never stored.
    """
    elements = sorted(elements, key=lambda e: e.name)
    out: dict[str, str] = {"dibpy": f"{__version__} format {FORMAT}"}
    for el in elements:
        h = hashlib.sha256()
        _hash_element(h, el)
        out[f"element {el.name}"] = h.hexdigest()[:16]
    if lib_dir.is_dir():
        h = hashlib.sha256()
        _hash_dir(h, lib_dir)
        out["dibpy shell library"] = h.hexdigest()[:16]
    for k, v in sorted(settings.items()):
        out[f"setting {k}"] = v
    env = hook_visible(environ, clear_env=clear_env)
    for k, v in sorted(env.items()):
        out[f"variable {k}"] = _secret_hash(v) if _SECRET.search(k) else _short(v)
        digest = file_digest_of(v, cache_dir)
        if digest is not None:
            out[f"file {k}"] = digest
    for el in elements:
        out.update(declared_inputs(el, offline=offline, environ=environ))
    out.update(sourcerepos.repo_inputs(elements, environ, cache_dir, offline=offline))
    if archive is not None:
        out.update({f"package archive {suite}": d for _, suite, d in archive})
    elif cache_dir is not None:
        out.update(archivestate.archive_inputs(elements, environ, cache_dir, offline=offline))
    return out


def hook_inputs(elements: Iterable[Element], phases: Iterable[str]) -> dict[str, str]:
    """A fingerprint of every file in the ``phases`` directories of every element, by
    name (``post-install.d hook 50-foo of element bar``), so that a miss names the hook."""
    out = {}
    for phase in phases:
        for el in sorted(elements, key=lambda e: e.name):
            d = el.path / phase
            if not d.is_dir():
                continue
            for p in sorted(d.rglob("*")):
                rel = p.relative_to(d).as_posix()
                if p.is_symlink():
                    value = "link " + os.readlink(p)
                elif p.is_file():
                    h = hashlib.sha256(b"x" if os.access(p, os.X_OK) else b"-")
                    with open(p, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                    value = h.hexdigest()[:16]
                else:
                    continue
                out[f"{phase} hook {rel} of element {el.name}"] = value
    return out


@dataclass(frozen=True)
class Checkpoint:
    """The tree as it is after ``after``: keyed by its predecessor's key (``parent``) and
    what the phases since then read (``inputs``)."""

    after: str
    #: the phases since the previous checkpoint (the ones a restore of it skips)
    phases: tuple[str, ...]
    key: str
    parent: str
    inputs: Mapping[str, str]


def checkpoints(
    inputs: Mapping[str, str], elements: Iterable[Element], packages: str = ""
) -> list[Checkpoint]:
    """The chain of checkpoints (model.PHASE_TABLE's), first to last.

    The first (after root.d) takes ``inputs`` (:func:`tree_inputs`: settings, variables,
    the element files outside the tree phases' directories, the archive's state, ...) and
    the root.d hooks; each later one its predecessor's key, its own phases' hook files and,
    for the phase they are installed before, the ``-p`` packages. A checkpoint whose phases
    have no files and no packages makes the same tree as its predecessor: same key.
    """
    elements = list(elements)
    out: list[Checkpoint] = []
    parent = ""
    for n, seg in enumerate(tree_segments()):
        names = tuple(p.name for p in seg)
        own = hook_inputs(elements, names)
        if n == 0:
            own = {**inputs, **own}
        if packages and PACKAGES_PHASE in names:
            own["setting packages"] = packages
        if own or not parent:
            key = key_of({**own, "checkpoint parent": parent} if parent else own)
        else:
            key = parent
        out.append(Checkpoint(names[-1], names, key, parent, own))
        parent = key
    return out


_VAR = re.compile(r"\$\{(\w+)(?::-([^}$]*))?\}|\$(\w+)")


def _expand(text: str, environ: Mapping[str, str]) -> str | None:
    """``$VAR``, ``${VAR}`` and ``${VAR:-default}`` from ``environ``; None when one is
    empty with no default (the input does not apply to this build)."""
    empty = False

    def sub(m: re.Match[str]) -> str:
        nonlocal empty
        value = environ.get(m.group(1) or m.group(3), "") or (m.group(2) or "")
        empty = empty or not value
        return value

    out = _VAR.sub(sub, text)
    return None if empty else out


def declared_inputs(
    el: Element, *, offline: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What an element's ``tree-cache-inputs`` file declares its hooks fetch by themselves.

    One input a line: ``url URL`` (the server's validator: ETag, Last-Modified, size) or
    ``file PATH`` / ``dir PATH`` (a content hash); ``#`` starts a comment.  ``$VAR``,
    ``${VAR}`` and ``${VAR:-default}`` take the build's environment; a line naming an
    empty variable without a default does not apply to this build.
    """
    f = el.path / "tree-cache-inputs"
    if not f.is_file():
        return {}
    out = {}
    for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
        kind, _, what = line.split("#", 1)[0].strip().partition(" ")
        what = what.strip()
        if not kind:
            continue
        if kind not in ("url", "file", "dir") or not what:
            raise ConfigError(
                f"{f}:{n}: {line.strip()!r} is not an input",
                hint="one a line: url URL, file PATH or dir PATH",
            )
        expanded = _expand(what, environ or {})
        if expanded is None:
            continue
        what = expanded
        value = sourcerepos.url_validator(what, offline) if kind == "url" else None
        if kind != "url" and os.path.exists(what):
            value = sourcerepos.path_hash(Path(what))
        out[f"declared input {el.name}: {kind} {what}"] = value or sourcerepos.UNRESOLVED
    return out


def hook_visible(environ: Mapping[str, str], *, clear_env: bool = False) -> dict[str, str]:
    """The variables of ``environ`` a hook sees, less those that cannot change the tree."""
    extra = {v for v in environ.get("DIB_TREE_CACHE_IGNORE_VARS", "").split() if v}
    out = {}
    for k, v in environ.items():
        if clear_env and not k.startswith("DIB_") and k not in CLEAR_ENV_KEEPS:
            continue
        if k in extra or _IGNORED_VARS.match(k) or _IGNORED_HOST_VARS.match(k):
            continue
        out[k] = v
    return out


def file_digest_of(value: str, cache_dir: Path | None) -> str | None:
    """sha256 of the file an absolute-path value names (``DIB_LOCAL_IMAGE``), else None.

    Digests are remembered under ``cache_dir`` by (device, inode, size, mtime, ctime): a
    rewrite in place changes the ctime even when size and mtime are put back, so a file
    with other content is never taken for the one hashed before.
    """
    if not value.startswith("/") or "\n" in value:
        return None
    try:
        st = os.stat(value)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    memo = cache_dir / "dibpy-digests" / f"{_short(value)}.json" if cache_dir else None
    if memo is not None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(memo.read_text())
            if data.get("stat") == ident:
                return str(data["sha256"])
    h = hashlib.sha256()
    try:
        with open(value, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    digest = h.hexdigest()
    if memo is not None:
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"path": value, "stat": ident, "sha256": digest}))
            os.replace(tmp, memo)
    return digest


def describe_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Why ``new`` misses the entry made from ``old``: one phrase per changed input."""
    reasons = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if a is None:
            reasons.append(f"{k} added")
        elif b is None:
            reasons.append(f"{k} removed")
        elif k.startswith(("variable ", "element ", "dibpy shell")) or " hook " in k:
            reasons.append(f"{k} changed")
        else:
            reasons.append(f"{k} changed ({a[:12]} -> {b[:12]})")
    return reasons


@dataclass(frozen=True)
class Hit:
    path: Path
    created: float
    age: float
    #: what the hooks had written into the hook tree by this checkpoint (hooks_delta)
    hooks: Mapping[str, object] = field(default_factory=dict)


#: the most a checkpoint keeps of what hooks wrote into the hook tree (compressed); a
#: checkpoint with more is not kept
HOOKS_DELTA_MAX = 8 << 20

HooksManifest = dict[str, tuple[int, int, int, int]]


def hooks_manifest(hooks_dir: Path) -> HooksManifest:
    """Every path of the merged hook tree, as it is now (mode, size, mtime, inode)."""
    out: HooksManifest = {}
    for dirpath, dirnames, filenames in os.walk(hooks_dir):
        for name in (*dirnames, *filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, hooks_dir)] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def hooks_delta(hooks_dir: Path, baseline: HooksManifest) -> dict[str, object] | None:
    """What the hooks so far wrote into the hook tree since ``baseline`` (the tree as it
    was merged): root.d and extra-data.d hooks leave there what later phases read
    (package-installs' squashed lists, pkg-map's, svc-map's, a config file copied from
    the host), so a checkpoint after them must bring it back with the tree.  ``{}`` when
    nothing changed; None when it is larger than HOOKS_DELTA_MAX."""
    now = hooks_manifest(hooks_dir)
    changed = sorted(k for k, v in now.items() if baseline.get(k) != v)
    removed = sorted(k for k in baseline if k not in now)
    if not changed and not removed:
        return {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        for rel in changed:
            tf.add(hooks_dir / rel, arcname=rel, recursive=False)
    if buf.tell() > HOOKS_DELTA_MAX:
        return None
    return {"tar": base64.b64encode(buf.getvalue()).decode(), "removed": removed}


def hooks_delta_names(delta: Mapping[str, object]) -> dict[str, object]:
    """A recorded :func:`hooks_delta` as names (for ``dibpy cache show``)."""
    names: list[str] = []
    if delta.get("tar"):
        raw = base64.b64decode(str(delta["tar"]))
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tf:
            names = tf.getnames()
    return {"written": names, "removed": delta.get("removed") or []}


def apply_hooks_delta(hooks_dir: Path, delta: Mapping[str, object]) -> None:
    """Put back in a fresh hook tree what :func:`hooks_delta` recorded."""
    removed = delta.get("removed") or []
    assert isinstance(removed, list)
    for rel in removed:
        p = hooks_dir / str(rel)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    data = delta.get("tar")
    if not data:
        return
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(str(data))), mode="r:gz") as tf:
        for m in tf.getmembers():
            dest = hooks_dir / m.name
            if (m.isfile() or m.issym()) and (dest.is_symlink() or dest.is_file()):
                dest.unlink()  # replaced, as the hook replaced it
        tf.extractall(hooks_dir, filter="tar")


_TAR_OPTS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")
#: a background copy beside the build: the lowest CPU and I/O priority short of idle
_NICE = ("nice", "-n", "10", "ionice", "-c", "2", "-n", "7")
#: a layer entry is the directory KEY.layer (an overlay's sealed upper directory) and its
#: metadata KEY.layer.json; a tarball entry is KEY.tar.zst and KEY.tar.json
LAYER = ".layer"
TARBALL = ".tar"
#: an image entry (:mod:`dibpy.imagecache`): the directory KEY.image and KEY.image.json
IMAGE = ".image"
#: the kinds whose payload is a directory
_DIR_KINDS = (LAYER, IMAGE)


def _kind_of(meta: Path) -> str:
    return next((k for k in _DIR_KINDS if meta.name.endswith(k + ".json")), TARBALL)


def _payload_of(meta: Path) -> Path:
    """The payload of the entry whose metadata is ``meta``."""
    base = meta.name.removesuffix(".json")
    return meta.with_name(base + ".zst") if base.endswith(TARBALL) else meta.with_name(base)


def publish(tmp: Path, entry: Path, meta: Path, data: Mapping[str, object]) -> bool:
    """Rename the finished payload ``tmp`` (a file or a directory) to ``entry`` and write
    its metadata ``meta`` from ``data``; False (``tmp`` left for the caller) if another
    build's directory entry got there first.  A file replaces an entry of the same name
    (the rename is atomic); either way an entry counts only once both are there."""
    tmp_meta = tmp.with_name(tmp.name + ".json-partial")
    tmp_meta.write_text(json.dumps(dict(data), indent=1) + "\n")
    try:
        os.rename(tmp, entry)
    except OSError as e:
        tmp_meta.unlink()
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
            return False
        raise
    os.replace(tmp_meta, meta)
    return True


def _payload_there(meta: Path) -> bool:
    payload = _payload_of(meta)
    return payload.is_dir() if _kind_of(meta) in _DIR_KINDS else payload.is_file()


class TreeCache:
    """Saved trees (checkpoints) under ``<image cache>/dibpy-trees``; see the module
    docstring.  Saves run in one background thread at a time, oldest first; :meth:`wait`
    joins them (the build calls it before the tree or its build directory goes)."""

    def __init__(
        self,
        cache_dir: Path,
        max_age: int = DEFAULT_MAX_AGE,
        max_size: int | None = None,
        *,
        layered: bool = False,
    ) -> None:
        self.dir = cache_dir / "dibpy-trees"
        self.max_age = max_age
        #: entries are overlay layers (:mod:`dibpy.treelayers`), else tarballs
        self.layered = layered
        #: the layers this build uses, each held with a shared lock on its metadata
        self._held: dict[str, int] = {}
        #: DIB_CACHE_MAX_SIZE: after each save, least recently used entries go above it
        self.max_size = max_size
        self._savers: list[threading.Thread] = []
        #: one save at a time: they share the cores with the build
        self._one_at_a_time = threading.Lock()
        self._save_errors: list[BaseException] = []

    def newest_inputs(
        self, element_set: str, arch: str, after: str = "post-root.d", parent: str | None = None
    ) -> dict[str, str] | None:
        """The inputs of the newest entry for the same elements, architecture and
        checkpoint (and, if given, the same predecessor), else None."""
        best: tuple[bool, float, dict[str, str]] | None = None
        for m in self.dir.glob("*.json") if self.dir.is_dir() else ():
            with contextlib.suppress(ValueError, OSError, AttributeError):
                data = json.loads(m.read_text())
                if str(data.get("elements", "")) != element_set or data.get("arch") != arch:
                    continue
                if data.get("after", "post-root.d") != after:
                    continue
                if not _payload_there(m):
                    continue
                rank = (parent is not None and data.get("parent") == parent, float(data["created"]))
                inputs = data.get("inputs")
                if isinstance(inputs, dict) and (best is None or rank > best[:2]):
                    best = (*rank, {str(k): str(v) for k, v in inputs.items()})
        return best[2] if best else None

    def _entry(self, key: str) -> Path:
        return self.dir / (f"{key}{LAYER}" if self.layered else f"{key}{TARBALL}.zst")

    def _meta(self, key: str) -> Path:
        return self.dir / f"{key}{LAYER if self.layered else TARBALL}.json"

    def has(self, key: str) -> bool:
        meta = self._meta(key)
        return meta.is_file() and _payload_there(meta)

    def lookup(self, key: str, quiet: bool = False) -> Hit | None:
        entry = self._entry(key)
        meta = self._meta(key)
        if not self.has(key):
            return None
        try:
            data = json.loads(meta.read_text())
            created = float(data.get("created", 0))
            hooks = data.get("hooks") or {}
        except (OSError, ValueError, AttributeError):
            return None
        if not isinstance(hooks, dict):
            return None
        age = time.time() - created
        if self.max_age <= 0:
            if not quiet:
                LOG.info("tree cache: reuse switched off (DIB_TREE_CACHE_MAX_AGE=0)")
            return None
        if age > self.max_age:
            if not quiet:
                LOG.info(
                    "tree cache: entry %s is %s old, older than the %s allowed: rebuilding",
                    key[:12],
                    human_age(age),
                    human_age(self.max_age),
                )
            return None
        return Hit(entry, created, age, hooks)

    def hold(self, key: str) -> bool:
        """Keep the layer ``key`` from being removed while this build uses it (a shared
        lock on its metadata, until :meth:`release`) and mark it used; False if it is gone."""
        if key in self._held:
            return True
        try:
            fd = os.open(self._meta(key), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        fcntl.flock(fd, fcntl.LOCK_SH)
        if not self.has(key):  # removed between the look and the lock
            os.close(fd)
            return False
        with contextlib.suppress(OSError):
            os.utime(fd)
        self._held[key] = fd
        return True

    def release(self) -> None:
        """Let go of every layer :meth:`hold` kept (the build's overlay is unmounted)."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()

    def keep_layer(self, key: str, upper: Path, describe: Mapping[str, object]) -> Path:
        """Keep the sealed upper directory ``upper`` as the layer entry ``key``; returns
        the directory the build stacks as its next lower layer.

        On the cache's filesystem the directory is renamed into the cache (atomic; the
        build goes on from the cache's copy, held); elsewhere (the build's tmpfs) it is
        copied into the cache in the background and the build goes on from ``upper``,
        which the build directory keeps until :meth:`wait`.  A layer of the same key that
        another build kept first is used as it is (the same inputs: the same tree)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        entry = self._entry(key)
        if self.has(key) and self.hold(key):
            return entry
        if os.stat(upper).st_dev == os.stat(self.dir).st_dev:
            tmp = self._partial(entry)
            os.rename(upper, tmp)
            try:
                published = self._publish(key, tmp, describe)
            except OSError as e:
                # a checkpoint is worth a warning, never the build: ours goes back
                os.rename(tmp, upper)
                LOG.warning("tree cache: could not keep the layer %s: %s", key[:12], e)
                return upper
            if not published:
                # another build's got there first; ours goes with the build directory
                os.rename(tmp, upper)
            held = self.hold(key)
            if published:
                self._after_save(key, describe)
            return entry if held or published else upper
        self._in_background(key, describe, layer=upper)
        return upper

    def _partial(self, entry: Path) -> Path:
        return entry.with_name(f".{entry.name}.{os.getpid()}.{threading.get_ident()}.partial")

    def _publish(self, key: str, tmp: Path, describe: Mapping[str, object]) -> bool:
        """:func:`publish` ``tmp`` as entry ``key``."""
        data = {"created": time.time(), "key": key, **describe}
        return publish(tmp, self._entry(key), self._meta(key), data)

    def _after_save(self, key: str, describe: Mapping[str, object]) -> None:
        self._prune(str(describe.get("elements", "")), str(describe.get("after", "")))
        if self.max_size is not None:
            for gone in prune_to_size(self.dir.parent, self.max_size, keep=key):
                LOG.info("tree cache: removed %s (DIB_CACHE_MAX_SIZE)", gone.key[:12])

    def restore(self, hit: Hit, target: Path) -> None:
        # the metadata's mtime is the entry's last use, for least-recently-used pruning
        with contextlib.suppress(OSError):
            os.utime(self._meta(hit.path.name.split(".", 1)[0]))
        run.run(["tar", "--zstd", "-x", *_TAR_OPTS, "-p", "-f", str(hit.path), "-C", str(target)])

    def save_in_background(self, key: str, tree: Path, describe: Mapping[str, object]) -> None:
        """Start saving ``tree`` as it is; :meth:`wait` must be called before it changes."""
        self._in_background(key, describe, tree=tree)

    def snapshot_in_background(
        self, key: str, tree: Path, describe: Mapping[str, object], scratch: Path
    ) -> None:
        """Copy ``tree`` now into an uncompressed tar under ``scratch`` (the build's own,
        fast directory), then compress it into the cache in the background: the tree may
        change as soon as this returns.  The copy is the only cost on the build's path."""
        snap = scratch / f".checkpoint-{key[:16]}.tar"
        after = describe.get("after", "")
        with contextlib.suppress(OSError):
            st = os.statvfs(scratch)
            if st.f_bavail * st.f_frsize < _tree_bytes(tree) + (1 << 30):
                # the copy would take the room the build's next phases need
                LOG.info("tree cache: not keeping the tree after %s: too little room", after)
                return
        try:
            run.run(
                ["tar", "-c", *_TAR_OPTS, "--one-file-system", "-f", str(snap)]
                + ["-C", str(tree), "."],
                quiet=True,
            )
        except (DibpyError, OSError) as e:
            # a checkpoint is worth a warning, never the build
            LOG.warning("tree cache: could not keep the tree after %s: %s", after, e)
            with contextlib.suppress(FileNotFoundError):
                snap.unlink()
            return
        self._in_background(key, describe, snapshot=snap)

    def _in_background(
        self,
        key: str,
        describe: Mapping[str, object],
        *,
        tree: Path | None = None,
        snapshot: Path | None = None,
        layer: Path | None = None,
    ) -> None:
        """Write entry ``key`` in a background thread: a tarball from ``snapshot`` (an
        uncompressed tar) or ``tree``, or a copy of the sealed ``layer`` directory."""
        self.dir.mkdir(parents=True, exist_ok=True)

        def _save() -> None:
            entry = self._entry(key)
            # two builds saving the same entry each write their own file; the rename is
            # atomic, so a reader sees one whole entry or the other, never a partial one
            tmp = self._partial(entry)
            with self._one_at_a_time:
                try:
                    if layer is not None:
                        if self.has(key):
                            return
                        # niced: the build goes on from the layer itself meanwhile
                        run.run(
                            [*_NICE, "cp", "-a", "--reflink=auto", "--", str(layer), str(tmp)],
                            quiet=True,
                        )
                        if self._publish(key, tmp, describe):
                            self._after_save(key, describe)
                        else:
                            shutil.rmtree(tmp, ignore_errors=True)
                        return
                    if snapshot is not None:
                        run.run(
                            # in the background, beside the build: one thread (not
                            # niced: on a loaded host it would starve, and the build
                            # waits for it at the end)
                            ["zstd", "-1", "-T1", "-q", "-f", str(snapshot), "-o", str(tmp)],
                            quiet=True,
                        )
                    else:
                        assert tree is not None
                        run.run(
                            ["tar", "-I", "zstd -1 -T0", "-c", *_TAR_OPTS, "--one-file-system"]
                            + ["-f", str(tmp), "-C", str(tree), "."],
                            quiet=True,
                        )
                    self._publish(key, tmp, describe)
                    self._after_save(key, describe)
                except BaseException as e:  # reported by wait()
                    self._save_errors.append(e)
                    if tmp.is_dir() and not tmp.is_symlink():
                        shutil.rmtree(tmp, ignore_errors=True)
                    for p in (tmp, tmp.with_name(tmp.name + ".json-partial")):
                        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                            p.unlink()
                finally:
                    if snapshot is not None:
                        with contextlib.suppress(FileNotFoundError):
                            snapshot.unlink()

        t = threading.Thread(target=_save, name=f"dibpy-tree-cache-{key[:8]}", daemon=True)
        self._savers.append(t)
        t.start()

    def wait(self) -> None:
        """Wait for every save started; a failed save is a warning, never the build's error."""
        while self._savers:
            self._savers.pop(0).join()
        for e in self._save_errors:
            LOG.warning("tree cache: could not save the tree: %s", e)
        self._save_errors = []

    def _prune(self, element_set: str, after: str) -> None:
        """The newest KEEP_PER_SET entries of each kind per element set and checkpoint
        stay; a layer in use by a build stays too."""
        same = [
            e for e in entries(self.dir.parent) if e.elements == element_set and e.after == after
        ]
        for kind in (LAYER, TARBALL):
            of_kind = sorted((e for e in same if e.kind == kind), key=lambda e: -e.created)
            for e in of_kind[KEEP_PER_SET:]:
                if e.key not in self._held:
                    remove(e)  # another build's layer in use stays too (its lock)


def _dir_bytes(d: Path) -> int:
    """The bytes of the files in ``d`` (a layer entry's size)."""
    total = 0
    for top, _, files in os.walk(d):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


def _tree_bytes(tree: Path) -> int:
    """The room an uncompressed copy of ``tree`` takes (its own filesystem only)."""
    total = 0
    dev = tree.lstat().st_dev
    for top, dirs, files in os.walk(tree):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == dev]
    return total


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def have_tools() -> bool:
    return shutil.which("zstd") is not None and shutil.which("tar") is not None


@dataclass(frozen=True)
class Entry:
    """One saved tree, as ``dibpy cache list`` shows it."""

    key: str
    path: Path
    size: int
    created: float
    last_used: float
    elements: str
    arch: str
    #: the checkpoint: the phase the tree is saved after
    after: str = "post-root.d"
    #: the key of the checkpoint before it ("" for the first)
    parent: str = ""
    #: LAYER (an overlay layer: only what its phases changed) or TARBALL (the whole tree)
    kind: str = TARBALL

    @property
    def meta(self) -> Path:
        return self.path.parent / f"{self.key}{self.kind}.json"


def entries(cache_dir: Path) -> list[Entry]:
    """Every complete entry of the tree cache under ``cache_dir``, most recently used first."""
    found = []
    tree_dir = cache_dir / "dibpy-trees"
    for meta in tree_dir.glob("*.json") if tree_dir.is_dir() else ():
        payload = _payload_of(meta)
        kind = _kind_of(meta)
        if not _payload_there(meta):
            continue
        with contextlib.suppress(ValueError, OSError, AttributeError):
            data = json.loads(meta.read_text())
            found.append(
                Entry(
                    key=meta.name.removesuffix(kind + ".json"),
                    path=payload,
                    kind=kind,
                    size=_dir_bytes(payload) if kind in _DIR_KINDS else payload.stat().st_size,
                    created=float(data.get("created", 0)),
                    last_used=meta.stat().st_mtime,
                    elements=str(data.get("elements", "")),
                    arch=str(data.get("arch", "")),
                    after=str(data.get("after", "post-root.d")),
                    parent=str(data.get("parent", "")),
                )
            )
    return sorted(found, key=lambda e: e.last_used, reverse=True)


def remove(entry: Entry) -> bool:
    """Remove ``entry``; False (and nothing removed) for a layer a build is using."""
    if entry.kind == TARBALL:
        for p in (entry.path, entry.meta):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        return True
    try:
        fd = os.open(entry.meta, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a build has it mounted
        # the metadata first: without it the entry no longer counts; the directory is
        # renamed away before it is emptied, so no reader sees half a layer
        with contextlib.suppress(FileNotFoundError):
            entry.meta.unlink()
        trash = entry.path.with_name(f".{entry.path.name}.{os.getpid()}.removed")
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def prune_to_size(cache_dir: Path, max_size: int, keep: str = "") -> list[Entry]:
    """Remove least recently used entries until the cache holds at most ``max_size``
    bytes (the entry ``keep``, just written, stays); returns what was removed."""
    all_entries = entries(cache_dir)
    total = sum(e.size for e in all_entries)
    removed = []
    for e in reversed(all_entries):
        if total <= max_size:
            break
        if e.key == keep or not remove(e):
            continue
        total -= e.size
        removed.append(e)
    return removed
