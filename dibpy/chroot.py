"""Preparing a target tree to run hooks inside it with chroot.

:func:`chroot_environment` mounts /proc, /sys (read-only), /dev (bind) and /dev/pts
into the target, swaps in the host's resolv.conf (keeping the image's own aside),
keeps services from starting (policy-rc.d), hands the host's CA bundle to the build
(for HTTPS through intercepting proxies), and optionally bind-mounts the merged hook
tree read-only at /tmp/in_target.d.  Everything is undone, in reverse, when the
context exits, whatever happened inside; processes left running in the chroot are
stopped first.  The CA bundle and policy-rc.d never reach the finished image.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from dibpy import mounts
from dibpy.hooks import IN_TARGET_HOOKS

LOG = logging.getLogger("dibpy")

#: where the host CA bundle appears inside the chroot during a build
CA_BUNDLE_IN_TARGET = "/tmp/dibpy-host-ca/ca-certificates.crt"
CA_ENV_VARS = (
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
)

_POLICY_RC_D = """#!/bin/sh
# written by dibpy during the build: services must not start in the build chroot
exit 101
"""
_POLICY_MARK = "written by dibpy"


def host_ca_bundle() -> Path | None:
    """The host's CA bundle: $SSL_CERT_FILE/$REQUESTS_CA_BUNDLE/$PIP_CERT or the distro's."""
    for var in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"):
        v = os.environ.get(var)
        if v and Path(v).is_file():
            return Path(v)
    for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(p).is_file():
            return Path(p)
    return None


def chroot_env_additions() -> dict[str, str]:
    """Environment variables pointing tools in the chroot at the host's CA bundle."""
    if host_ca_bundle() is None:
        return {}
    return dict.fromkeys(CA_ENV_VARS, CA_BUNDLE_IN_TARGET)


_HOST_RESOLV = Path("/etc/resolv.conf")
_ORIG = "resolv.conf.ORIG"


@contextlib.contextmanager
def _resolv_conf(root: Path) -> Iterator[None]:
    """The host's resolv.conf in the target; the image's own back in place on exit."""
    etc = root / "etc"
    if not etc.is_dir():
        yield
        return
    rc = etc / "resolv.conf"
    orig = etc / _ORIG
    if rc.exists() or rc.is_symlink():
        os.replace(rc, orig)
    try:
        if _HOST_RESOLV.exists():
            shutil.copyfile(_HOST_RESOLV, rc)
        yield
    finally:
        if rc.exists() or rc.is_symlink():
            rc.unlink()
        if orig.exists() or orig.is_symlink():
            os.replace(orig, rc)


def refresh_resolv_conf(root: Path) -> None:
    """Put the host's resolv.conf back if a package replaced it during the build.

    Installing systemd-resolved, for one, points /etc/resolv.conf at a stub resolver that
    does not run in a chroot, and every later hook would be without DNS.  The package's
    version is what the image should have, so it becomes the one restored at the end.
    """
    rc = root / "etc" / "resolv.conf"
    if not _HOST_RESOLV.exists() or not (root / "etc").is_dir():
        return
    host = _HOST_RESOLV.read_bytes()
    if rc.is_file() and not rc.is_symlink() and rc.read_bytes() == host:
        return
    if rc.exists() or rc.is_symlink():
        LOG.info(
            "a package replaced /etc/resolv.conf: keeping it for the image, "
            "the host's for the rest of the build"
        )
        os.replace(rc, root / "etc" / _ORIG)
    shutil.copyfile(_HOST_RESOLV, rc)


@contextlib.contextmanager
def _policy_rc_d(root: Path) -> Iterator[None]:
    sbin = root / "usr" / "sbin"
    p = sbin / "policy-rc.d"
    ours = False
    if sbin.is_dir() and not (p.exists() or p.is_symlink()):
        p.write_text(_POLICY_RC_D)
        p.chmod(0o755)
        ours = True
    try:
        yield
    finally:
        if ours and p.is_file() and _POLICY_MARK in p.read_text(errors="replace"):
            p.unlink()


@contextlib.contextmanager
def _ca_bundle(root: Path) -> Iterator[None]:
    src = host_ca_bundle()
    dest = root / CA_BUNDLE_IN_TARGET.lstrip("/")
    if src is None:
        yield
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    try:
        yield
    finally:
        shutil.rmtree(dest.parent, ignore_errors=True)


def bind_hooks(root: Path, hooks_dir: Path, stack: contextlib.ExitStack) -> None:
    """Bind-mount the merged hook tree read-only at /tmp/in_target.d; undone by ``stack``."""
    target = root / IN_TARGET_HOOKS.lstrip("/")
    # the mount point itself must not stay in the image
    stack.callback(_rmdir_quiet, target)
    mounts.mount(["--bind", str(hooks_dir)], target, stack, "the hook tree")
    mounts.mount_ro_remount(target)


@contextlib.contextmanager
def chroot_environment(root: Path, hooks_dir: Path | None = None) -> Iterator[None]:
    """Make ``root`` ready for ``chroot``; undo everything on exit (see module docstring)."""
    with contextlib.ExitStack() as stack:
        # registered first, so it runs last: nothing may outlive the mounts
        stack.callback(mounts.kill_processes_in, root)
        mounts.mount(["-t", "proc", "proc"], root / "proc", stack, "the chroot's /proc")
        mounts.mount(["-t", "sysfs", "-o", "ro", "sysfs"], root / "sys", stack, "the chroot's /sys")
        mounts.mount(["--bind", "/dev"], root / "dev", stack, "the chroot's /dev")
        mounts.mount(
            ["-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts"],
            root / "dev" / "pts",
            stack,
            "the chroot's /dev/pts",
        )
        # processes must be gone before /proc & co. are unmounted (stack is LIFO)
        stack.callback(mounts.kill_processes_in, root)
        if hooks_dir is not None:
            bind_hooks(root, hooks_dir, stack)
        stack.enter_context(_resolv_conf(root))
        stack.enter_context(_policy_rc_d(root))
        stack.enter_context(_ca_bundle(root))
        yield


def _rmdir_quiet(p: Path) -> None:
    with contextlib.suppress(OSError):
        p.rmdir()
