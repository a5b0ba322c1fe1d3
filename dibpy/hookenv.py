"""The hook environment: every variable and shell function a hook sees.

This module is the element contract in one place: what a hook written for
diskimage-builder may rely on (``TMP_MOUNT_PATH``, ``TARGET_ROOT``, ``TMP_HOOKS_PATH``,
``IMAGE_ELEMENT``, ``ELEMENTS_PATH``, ``_LIB``, the ``DIB_*`` settings, the ``die`` and
``get_image_element_array`` functions, ...).  The functions take plain inputs (the
config, the resolved elements, paths) and return the mapping; the few facts read from
the host (our interpreter, whether sudo or a real diskimage_builder is there, the CA
bundle) come in as one :class:`HostFacts`, so every variable can be tested without a
build.  ``Build.hook_env`` is a thin call of :func:`hook_env`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dibpy import __version__, chroot
from dibpy.config import BuildConfig
from dibpy.elements.model import Element

#: PATH inside the chroot, and the directories appended to the host's PATH
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: diskimage-builder's lib/ (``_LIB``): die, common-functions, img-functions, ...
LIB_DIR = Path(__file__).resolve().parent / "lib"
#: what ``-c`` (clear the environment) keeps of the caller's environment
CLEAR_ENV_KEEPS = ("HOME", "TERM", "PATH", "USER")
#: never passed on: they describe our interpreter, not the hook's
DROPPED_VARS = ("TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
GIB = 1024**3
MIB = 1024**2

#: the bash function ``die``, exported to every hook as diskimage-builder does
DIE_FUNCTION = '() {  echo "ERROR: $*" >&2;\n exit 1\n}'

#: the body of the bash function get_image_element_array (exported to hooks and
#: printed by ``element-info --env``); pure bash, so it works in a chroot without python.
#: ``%q`` so that a path with a space survives the documented ``eval declare -A a=($(...))``
GET_IMAGE_ELEMENT_ARRAY_BODY = """  local _line
  while IFS= read -r _line; do
    [ -n "$_line" ] || continue
    printf '[%q]=%q ' "${_line%%: *}" "${_line#*: }"
  done <<< "${IMAGE_ELEMENT_YAML}"
  echo
"""


@dataclass(frozen=True)
class HostFacts:
    """What the hook environment reads from the host; :func:`probe_host` fills it in."""

    #: DIB_PYTHON_EXEC: diskimage-builder's element tools run with it
    python_exec: str = sys.executable
    #: a real diskimage_builder is importable (then our stand-in modules stay off PYTHONPATH)
    has_diskimage_builder: bool = False
    #: given the host PATH, whether hooks need dibpy's ``sudo`` stand-in (root, no sudo)
    needs_sudo: Callable[[str], bool] = lambda path: False
    #: variables pointing tools in the chroot at the host's CA bundle
    chroot_additions: Mapping[str, str] = field(default_factory=dict)


@functools.cache
def host_has_diskimage_builder() -> bool:
    """Whether a real diskimage_builder is importable by DIB_PYTHON_EXEC (our interpreter,
    which diskimage-builder's elements run their Python tools with); it then wins."""
    return importlib.util.find_spec("diskimage_builder") is not None


def needs_sudo_standin(path: str) -> bool:
    """Root on a host without sudo: hooks get dibpy's stand-in that just runs the command."""
    return os.geteuid() == 0 and shutil.which("sudo", path=path) is None


def probe_host() -> HostFacts:
    return HostFacts(
        python_exec=sys.executable,
        has_diskimage_builder=host_has_diskimage_builder(),
        needs_sudo=needs_sudo_standin,
        chroot_additions=chroot.chroot_env_additions(),
    )


def lockfiles_dir(environ: Mapping[str, str]) -> Path:
    """DIB_LOCKFILES: where hooks keep their flock files."""
    return Path(environ.get("DIB_LOCKFILES") or "~/.cache/dib/lockfiles").expanduser()


def host_path(path: str) -> str:
    """The caller's PATH with the system directories a hook expects appended."""
    parts = [p for p in path.split(":") if p]
    for p in CHROOT_PATH.split(":"):
        if p not in parts:
            parts.append(p)
    return ":".join(parts)


def base_env(environ: Mapping[str, str], *, clear_env: bool) -> dict[str, str]:
    """The part of the caller's environment a hook inherits."""
    if clear_env:
        base = {k: v for k, v in environ.items() if k in CLEAR_ENV_KEEPS}
    else:
        base = dict(environ)
    for k in DROPPED_VARS:
        base.pop(k, None)
    return base


def dib_env(environ: Mapping[str, str]) -> str:
    """DIB_ENV: the caller's DIB_* settings as ``declare -x`` lines (no passwords), for the
    manifest."""
    return "\n".join(
        f"declare -x {k}={shlex.quote(v)}"
        for k, v in sorted(environ.items())
        if k.startswith("DIB_") and "PASSWORD" not in k
    )


def element_env(elements: Sequence[Element]) -> dict[str, str]:
    """IMAGE_ELEMENT, IMAGE_ELEMENT_YAML and the exported get_image_element_array."""
    return {
        "IMAGE_ELEMENT": " ".join(e.name for e in elements),
        "IMAGE_ELEMENT_YAML": "\n".join(f"{e.name}: {e.path}" for e in elements),
        "BASH_FUNC_get_image_element_array%%": "() {\n" + GET_IMAGE_ELEMENT_ARRAY_BODY + "}",
    }


def element_info_script(names: Sequence[str], paths: Mapping[str, str]) -> str:
    """What diskimage-builder's ``element-info --env`` prints, for element scripts that eval it.

    ``get_image_element_array`` is pure bash (no python needed inside a chroot); use it as
    ``eval declare -A image_elements=($(get_image_element_array))``.
    """
    yaml_map = "\n".join(f"{n}: {paths[n]}" for n in names)
    return (
        f"export IMAGE_ELEMENT={shlex.quote(' '.join(names))}\n"
        f"export IMAGE_ELEMENT_YAML={shlex.quote(yaml_map)}\n"
        f"function get_image_element_array {{\n{GET_IMAGE_ELEMENT_ARRAY_BODY}}};\n"
        "export -f get_image_element_array;\n"
    )


def build_env(
    cfg: BuildConfig,
    elements: Sequence[Element],
    *,
    elements_path: str,
    build_dir: Path,
    target: Path,
    lockfiles: Path,
    python_exec: str = sys.executable,
) -> dict[str, str]:
    """The variables dibpy sets for every hook of a build (host or chroot alike)."""
    image = build_dir / "image"
    env = {
        "TARGET_ROOT": str(target),
        "TMP_MOUNT_PATH": str(target),
        "TMP_HOOKS_PATH": str(build_dir / "hooks"),
        "TMP_BUILD_DIR": str(build_dir),
        "TMP_IMAGE_DIR": str(image),
        "TMP_IMAGE_PATH": str(image / "image.raw"),
        "IMAGE_NAME": str(cfg.output_base),
        **element_env(elements),
        "ELEMENTS_PATH": elements_path,
        "ARCH": cfg.arch,
        "DIB_ARCH": cfg.arch,
        "DIB_IMAGE_CACHE": str(cfg.image_cache),
        "DIB_OFFLINE": "1" if cfg.offline else "",
        "DIB_DEBUG_TRACE": str(cfg.debug_trace),
        "DIB_PYTHON_EXEC": python_exec,
        "DIB_DEFAULT_INSTALLTYPE": cfg.install_type,
        "DIB_CHECKSUM": ",".join(cfg.checksum) or "0",
        "DIB_ROOT_LABEL": cfg.effective_root_label,
        "DIB_ROOT_FSTYPE": cfg.fs_type,
        "FS_TYPE": cfg.fs_type,
        "DIB_ARGS": " ".join(shlex.quote(a) for a in cfg.argv),
        "DIB_ENV": dib_env(cfg.environ),
        "DIB_MIN_TMPFS": str(cfg.min_tmpfs),
        "DIB_IMAGE_SIZE": str(cfg.image_size // GIB) if cfg.image_size else "",
        "DIB_VERSION": f"dibpy-{__version__}",
        "_LIB": str(LIB_DIR),
        "DIB_BUILDER": "dibpy",
        # diskimage-builder exports die and lock files' directory to every hook
        "BASH_FUNC_die%%": DIE_FUNCTION,
        "DIB_LOCKFILES": str(lockfiles),
        "OUT_IMAGE_PATH": str(image / "image.raw"),
        "DIB_BLOCK_DEVICE_PARAMS_YAML": str(build_dir / "block-device" / "params.yaml"),
    }
    if cfg.image_extra_size:
        env["DIB_IMAGE_EXTRA_SIZE"] = str(cfg.image_extra_size // MIB)
    if cfg.release:
        env["DIB_RELEASE"] = cfg.release
    if cfg.mirror:
        env["DIB_DISTRIBUTION_MIRROR"] = cfg.mirror
    if cfg.ramdisk:
        env["IS_RAMDISK"] = "1"
    if cfg.no_cache:
        env["DIB_DEBOOTSTRAP_CACHE"] = "0"
    return env


def block_device_env(
    cfg: BuildConfig, getval: Callable[[str], object], image_path: str | Path
) -> dict[str, str]:
    """What the hooks after the block device is made (pre-finalise.d, finalise.d,
    cleanup.d) also see; ``getval`` is the block device's ``getval``."""
    return {
        "IMAGE_BLOCK_DEVICE": str(getval("image-block-device") or ""),
        "IMAGE_BLOCK_DEVICES": str(getval("image-block-devices") or ""),
        "DIB_ROOT_LABEL": str(getval("root-label") or cfg.effective_root_label),
        "DIB_ROOT_FSTYPE": str(getval("root-fstype") or cfg.fs_type),
        "DIB_BOOT_LABEL": str(getval("boot-label") or ""),
        "DIB_MOUNTPOINTS": str(getval("mount-points") or ""),
        "TMP_IMAGE_PATH": str(image_path),
    }


def archive_state_var(state: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """``DIB_ARCHIVE_STATE``: the package archive's state read at plan time
    (:func:`dibpy.archivestate.archive_state`), one ``MIRROR SUITE SHA256`` line per suite.

    The debootstrap element keys its bootstrap cache on it; a hook run without it
    (diskimage-builder) fetches the Release files itself.  Absent when nothing was read
    (not an apt-based build, or the tree cache is off).
    """
    if not state:
        return {}
    return {"DIB_ARCHIVE_STATE": "".join(f"{m} {s} {d}\n" for m, s, d in state)}


def hook_env(
    cfg: BuildConfig,
    elements: Sequence[Element],
    *,
    elements_path: str,
    build_dir: Path,
    target: Path,
    in_chroot: bool,
    lockfiles: Path | None = None,
    extra: Mapping[str, str] = {},
    host: HostFacts | None = None,
    archive_state: Sequence[tuple[str, str, str]] = (),
) -> dict[str, str]:
    """The whole environment of one hook run on ``target``, in its chroot or on the host.

    ``extra`` (e.g. :func:`block_device_env`) overrides the build's variables; PATH, HOME
    and the host-only variables are settled last.  ``host`` defaults to
    :func:`probe_host`.
    """
    host = host if host is not None else probe_host()
    base = base_env(cfg.environ, clear_env=cfg.clear_env)
    env = {
        **base,
        **build_env(
            cfg,
            elements,
            elements_path=elements_path,
            build_dir=build_dir,
            target=target,
            lockfiles=lockfiles if lockfiles is not None else lockfiles_dir(cfg.environ),
            python_exec=host.python_exec,
        ),
        **archive_state_var(archive_state),
        **extra,
    }
    if in_chroot:
        env["PATH"] = CHROOT_PATH
        # diskimage-builder's chroot hooks run as root with root's home
        env["HOME"] = "/root"
        # a host directory: a chroot hook making its own build dir (its ramdisk
        # element's mk_build_dir) must do it in the chroot's /tmp
        env.pop("TMP_DIR", None)
        env.update(host.chroot_additions)
    else:
        # elements written for diskimage-builder call their bin/ tools by name on the host
        env["PATH"] = host_path(base.get("PATH", "")) + ":" + str(build_dir / "hooks" / "bin")
        if host.needs_sudo(env["PATH"]):
            # root without sudo: diskimage-builder's hooks call `sudo CMD` everywhere
            env["PATH"] += ":" + str(LIB_DIR / "bin")
        if not host.has_diskimage_builder:
            # its element tools import a few diskimage_builder modules
            env["PYTHONPATH"] = str(LIB_DIR / "python")
    return env
