"""The gentoo element's chroot phases (pre-install.d, bin/install-packages, post-install.d)
and environment.d, run for real in a tree whose ``/usr`` is an overlay over the host's
(``test_elements_new_hooks.in_chroot``), each hook after environment.d is sourced as a
build sources it.  No Gentoo mirror is reachable, so portage's commands are stand-ins on
PATH that record their arguments and do to the tree what the real ones would where the
hooks depend on it: ``emerge-webrsync`` unpacks a small portage tree at PORTDIR,
``eselect profile set`` points make.profile into it, ``emerge`` keeps an installed-package
database and the world file, writes distfiles and binary packages, deselects and
depcleans.  The tests check the files the hooks leave.  root.d is tested in
``test_elements_smaller``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mounts_under, write
from tests.integration.test_elements_new_hooks import (
    ELEMENTS,
    calls,
    in_chroot,
    make_tree,
    one_line_error,
    stand_in,
    upper,
)

GENTOO = ELEMENTS / "gentoo"
ENV = GENTOO / "environment.d/00-gentoo-envars.bash"
SET_PROFILE = GENTOO / "pre-install.d/02-gentoo-00-set-profile"
FLAGS = GENTOO / "pre-install.d/02-gentoo-02-flags"
OVERLAYS = GENTOO / "pre-install.d/02-gentoo-03-enable-overlays"
PYTHON = GENTOO / "pre-install.d/02-gentoo-04-install-desired-python"
CLEANUP = GENTOO / "post-install.d/99-cleanup"
PROFILE = "default/linux/amd64/23.0"
TREE = "/tmp/portage-portdir"  # PORTDIR as environment.d sets it
# the packages the stand-in tree has ebuilds for
EBUILDS = ["app-admin/sudo", "sys-fs/dosfstools", "sys-kernel/gentoo-kernel-bin",
           "app-eselect/eselect-repository", "dev-vcs/git", "sys-apps/portage",
           "app-editors/vim", "dev-libs/libfoo", "app-misc/tool"]  # fmt: skip
OFFICIAL = ["guru", "haskell"]  # the stand-in eselect's list of official overlays

# -- stand-ins: each records its arguments in /tmp/NAME.calls, then acts on the tree

WEBRSYNC = f"""repo=${{PORTDIR:-/var/db/repos/gentoo}}
for p in {PROFILE} {PROFILE}/systemd {PROFILE}/musl; do
    mkdir -p "$repo/profiles/$p"
done
echo gentoo > "$repo/profiles/repo_name"
for e in {" ".join(EBUILDS)}; do
    mkdir -p "$repo/$e"; echo "EAPI=8" > "$repo/$e/${{e#*/}}-1.ebuild"
done
"""
ESELECT = f"""repo=${{PORTDIR:-/var/db/repos/gentoo}}
case "$1 $2" in
"profile set")
    [ -d "$repo/profiles/$3" ] || {{ echo "!!! Error: Can't set new profile" >&2; exit 1; }}
    rel=$(realpath -m --relative-to=/etc/portage "$repo/profiles/$3")
    ln -sfn "$rel" /etc/portage/make.profile ;;
"locale set") mkdir -p /etc/env.d; echo "LANG=\\"$3\\"" > /etc/env.d/02locale ;;
"repository enable")
    case " {" ".join(OFFICIAL)} " in *" $3 "*) ;; *)
        echo "Fetching list" >&2; echo "!!! Error: Repository '$3' not found" >&2; exit 1 ;; esac
    mkdir -p /etc/portage/repos.conf
    printf '[%s]\\nlocation = /var/db/repos/%s\\nsync-type = git\\n' "$3" "$3" \\
        >> /etc/portage/repos.conf/eselect-repo.conf
    echo "sync-uri = file:///srv/$3.git" >> /etc/portage/repos.conf/eselect-repo.conf ;;
"news read") ;;
*) echo "eselect: unknown $*" >&2; exit 1 ;;
esac
"""
EMAINT = """if [ "$1" = sync ]; then
    grep -qx "\\[$3\\]" /etc/portage/repos.conf/eselect-repo.conf
    mkdir -p "/var/db/repos/$3/profiles"; echo "$3" > "/var/db/repos/$3/profiles/repo_name"
fi
"""
# emerge: /var/db/pkg/CAT/NAME is an installed package, /var/lib/portage/world the
# selected ones; a merge fetches DISTDIR/NAME.tar.xz and (FEATURES=buildpkg) writes
# PKGDIR/CAT/NAME.gpkg.tar.  --depclean without atoms removes every package that is
# neither in world nor marked system.  Options (-* words) are ignored but recorded.
EMERGE = """repo=${PORTDIR:-/var/db/repos/gentoo}; db=/var/db/pkg; world=/var/lib/portage/world
mkdir -p "$db" "${world%/*}"; touch "$world"
mode=merge oneshot=0 atoms=()
for a in "$@"; do
    case "$a" in
    --deselect) mode=deselect ;; --depclean) mode=depclean ;; --oneshot) oneshot=1 ;;
    @world|@preserved-rebuild) mode=update ;;
    -*) ;; *) atoms+=("$a") ;;
    esac
done
[ -d "$repo/profiles" ] || { echo "!!! no ebuild repository at $repo" >&2; exit 1; }
case $mode in
merge)
    for a in "${atoms[@]}"; do
        [ -d "$repo/$a" ] ||
            { echo "emerge: there are no ebuilds to satisfy \\"$a\\"." >&2; exit 1; }
    done
    for a in "${atoms[@]}"; do
        mkdir -p "$db/$a"; echo "USE=$USE" > "$db/$a/USE"
        mkdir -p "$DISTDIR"; echo src > "$DISTDIR/${a#*/}.tar.xz"
        case " $FEATURES " in *" buildpkg "*)
            mkdir -p "$PKGDIR/${a%/*}"; echo bin > "$PKGDIR/$a.gpkg.tar" ;; esac
        [ $oneshot = 1 ] || grep -qx "$a" "$world" || echo "$a" >> "$world"
    done ;;
deselect)
    for a in "${atoms[@]}"; do
        grep -vx "$a" "$world" > "$world.new" || true; mv "$world.new" "$world"
    done ;;
depclean)
    for d in "$db"/*/*; do
        a=${d#"$db"/}
        [ -e "$d/system" ] || grep -qx "$a" "$world" || { rm -r "$d"; echo ">>> unmerge $a"; }
    done ;;
esac
"""
PORTAGEQ = 'echo "${PORTDIR:-/var/db/repos/gentoo}"'
TOOLS = {"emerge-webrsync": WEBRSYNC, "eselect": ESELECT, "emaint": EMAINT,
         "emerge": EMERGE, "portageq": PORTAGEQ, "locale-gen": "", "etc-update": ""}  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A stage3-like tree: /etc/portage with the stage's make.profile link, the stand-ins,
    and the element's bin/ (and pkg-map's) in /usr/local/bin as install-bin puts them."""
    root = make_tree(tmp_path)
    (root / "etc/portage").mkdir()
    (root / "etc/portage/make.profile").symlink_to("../../var/db/repos/gentoo/profiles/stage")
    write(root / "etc/portage/make.conf", 'COMMON_FLAGS="-O2 -pipe"\n')
    (root / "var/db/pkg").mkdir(parents=True)
    # pkg-map needs awk: the host's is reached through /etc/alternatives, which the
    # tree's own /etc lacks (a stage3 has gawk)
    awk = os.path.realpath("/usr/bin/awk")
    (root / "etc/alternatives").mkdir()
    (root / "etc/alternatives/awk").symlink_to(awk)
    for name, body in TOOLS.items():
        stand_in(root, name, body)
    for tool in (GENTOO / "bin/install-packages", ELEMENTS / "pkg-map/bin/pkg-map"):
        dest = upper(root) / "local/bin" / tool.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tool, dest)
    yield root
    assert not mounts_under(tmp_path), "the mount namespace took its mounts with it"


def run(tree: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """COMMAND (a hook in /tmp/in_target.d or a command line) in the chroot, after
    sourcing environment.d under set -eu as a build does before every hook."""
    target = tree / "tmp/in_target.d"
    if not target.exists():
        shutil.copytree(GENTOO, target, symlinks=True)
    runner = tree.parent / "run-gentoo"
    write(runner, f"#!/bin/bash\nset -eu -o pipefail\n"
                  f". /tmp/in_target.d/environment.d/{ENV.name}\nset +eu +o pipefail\n"
                  f"exec {command}\n", 0o755)  # fmt: skip
    return in_chroot(tree, runner, **{"ARCH": "amd64", **env})


def hook(path: Path) -> str:
    return f"/tmp/in_target.d/{path.relative_to(GENTOO)}"


def synced(tree: Path) -> Path:
    """The tree's portage tree, as emerge-webrsync leaves it."""
    r = run(tree, "emerge-webrsync -q")
    assert r.returncode == 0, r.stderr
    return tree / TREE.lstrip("/")


def installed(tree: Path) -> set[str]:
    db = tree / "var/db/pkg"
    return {f"{c.name}/{p.name}" for c in db.iterdir() for p in c.iterdir()}


def world(tree: Path) -> list[str]:
    f = tree / "var/lib/portage/world"
    return f.read_text().split() if f.exists() else []


def stage_package(tree: Path, atom: str, system: bool = False) -> None:
    d = tree / "var/db/pkg" / atom
    d.mkdir(parents=True)
    if system:
        (d / "system").touch()


# ---------------------------------------------------------------- environment.d


def source_env(**env: str) -> subprocess.CompletedProcess[str]:
    show = "$PORTDIR|$DISTDIR|$PKGDIR|$USE|$DIB_INIT_SYSTEM|$GENTOO_PROFILE"
    script = f'set -eu; source {ENV}; echo "{show}"'
    return subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_environment_exports_the_emerge_settings_and_the_init_system() -> None:
    r = source_env(ARCH="arm64")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split("|") == [
        "/tmp/portage-portdir", "/tmp/portage-distdir", "/tmp/portage-pkgdir", "-build",
        "openrc", "default/linux/arm64/23.0"]  # fmt: skip
    r = source_env(ARCH="amd64", GENTOO_PROFILE=f"{PROFILE}/systemd")
    assert r.stdout.strip().split("|")[4:] == ["systemd", f"{PROFILE}/systemd"], r.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [({"GENTOO_PORTAGE_CLEANUP": "false"}, ["GENTOO_PORTAGE_CLEANUP='false'", "True", "False"]),
     ({"GENTOO_PYTHON_TARGETS": "python3_12 python3.13"},
      ["GENTOO_PYTHON_TARGETS", "'python3.13'"]),
     ({"GENTOO_OVERLAYS": "guru https://example.invalid/x.git"}, ["GENTOO_OVERLAYS", "https:"]),
     ({"GENTOO_EMERGE_DEFAULT_OPTS": "--quiet app-editors/vim"},
      ["GENTOO_EMERGE_DEFAULT_OPTS", "vim"]),
     ({"GENTOO_PROFILE": "../../etc"}, ["GENTOO_PROFILE='../../etc'", "profile"])],
)  # fmt: skip
def test_environment_bad_values_are_one_line(env: dict[str, str], words: list[str]) -> None:
    r = source_env(ARCH="amd64", **env)
    assert r.stdout == ""
    one_line_error(r, "gentoo:", *words)


def test_environment_bad_emerge_env_item_is_one_line() -> None:
    script = f"set -eu; GENTOO_EMERGE_ENV=('USE=\"x\"' 'rm -rf /'); source {ENV}; echo reached"
    r = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert "reached" not in r.stdout
    one_line_error(r, "gentoo:", "GENTOO_EMERGE_ENV", "'rm -rf /'")


# ---------------------------------------------------------------- 02-gentoo-00-set-profile


def test_set_profile_syncs_the_tree_and_points_make_profile_into_it(tree: Path) -> None:
    r = run(tree, hook(SET_PROFILE))
    assert r.returncode == 0, r.stderr
    assert calls(tree, "emerge-webrsync") == ["-q"]
    assert (tree / TREE.lstrip("/") / "profiles/repo_name").read_text() == "gentoo\n"
    link = tree / "etc/portage/make.profile"
    assert os.readlink(link) == f"../..{TREE}/profiles/{PROFILE}"
    assert link.resolve() == tree / TREE.lstrip("/") / "profiles" / PROFILE
    assert (tree / "etc/timezone").read_text() == "UTC\n"
    assert os.readlink(tree / "etc/localtime") == "../usr/share/zoneinfo/UTC"
    assert (tree / "etc/locale.gen").read_text() == "en_US.UTF-8 UTF-8\nen_US ISO-8859-1\n"
    assert calls(tree, "locale-gen") == ["-q"]
    assert (tree / "etc/env.d/02locale").read_text() == 'LANG="en_US.utf8"\n'
    # again (a rebuild from a checkpoint): the tree is there, locale.gen keeps one copy
    r = run(tree, hook(SET_PROFILE), GENTOO_PROFILE=f"{PROFILE}/systemd")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "emerge-webrsync") == ["-q"]
    assert os.readlink(link) == f"../..{TREE}/profiles/{PROFILE}/systemd"
    assert (tree / "etc/locale.gen").read_text() == "en_US.UTF-8 UTF-8\nen_US ISO-8859-1\n"


def test_set_profile_musl_has_no_glibc_locales(tree: Path) -> None:
    r = run(tree, hook(SET_PROFILE), GENTOO_PROFILE=f"{PROFILE}/musl")
    assert r.returncode == 0, r.stderr
    assert os.readlink(tree / "etc/portage/make.profile").endswith("/23.0/musl")
    assert not (tree / "etc/locale.gen").exists()
    assert calls(tree, "locale-gen") == []


def test_set_profile_unknown_profile_is_one_line(tree: Path) -> None:
    r = run(tree, hook(SET_PROFILE), GENTOO_PROFILE="default/linux/amd64/17.1")
    one_line_error(r, "gentoo:", "GENTOO_PROFILE=default/linux/amd64/17.1", "eselect profile list")
    assert os.readlink(tree / "etc/portage/make.profile").endswith("/profiles/stage")


def test_set_profile_eselect_refusal_is_one_line(tree: Path) -> None:
    synced(tree)
    stand_in(tree, "eselect", 'echo "!!! Error: profile is deprecated" >&2; exit 1')
    r = run(tree, hook(SET_PROFILE))
    one_line_error(r, "gentoo:", f"GENTOO_PROFILE={PROFILE}", "profile is deprecated")


# ---------------------------------------------------------------- 02-gentoo-02-flags


@pytest.mark.parametrize(("arch", "bios"), [("amd64", True), ("arm64", False)])
def test_flags_write_the_image_use_flags(tree: Path, arch: str, bios: bool) -> None:
    write(tree / "etc/portage/package.keywords", "dev-libs/libfoo ~amd64\n")
    r = run(tree, hook(FLAGS), ARCH=arch)
    assert r.returncode == 0, r.stderr
    portage = tree / "etc/portage"
    for d in ("profile", "package.mask", "package.unmask", "package.use"):
        assert (portage / d).is_dir(), d
    kept = portage / "package.accept_keywords/stage-package.keywords"
    assert kept.read_text() == "dev-libs/libfoo ~amd64\n"
    assert not (portage / "package.keywords").exists()
    use = (portage / "package.use/dib-image").read_text().splitlines()
    assert "sys-kernel/installkernel dracut grub" in use
    assert "sys-boot/grub device-mapper grub_platforms_efi-64" in use
    assert ("sys-boot/grub grub_platforms_pc" in use) is bios
    assert not any("musl" in u or "pam" in u for u in use)
    # rewritten, not appended to, on a second run
    assert run(tree, hook(FLAGS), ARCH=arch).returncode == 0
    assert (portage / "package.use/dib-image").read_text().splitlines() == use


# ---------------------------------------------------------------- 02-gentoo-03-enable-overlays


def test_overlays_are_enabled_synced_and_their_tools_merged_oneshot(tree: Path) -> None:
    r = run(tree, hook(OVERLAYS))  # none: nothing merged, nothing enabled
    assert r.returncode == 0, r.stderr
    assert not (tree / "etc/portage/repos.conf").exists() and calls(tree, "emerge") == []
    r = run(tree, hook(OVERLAYS), GENTOO_OVERLAYS="guru haskell")
    assert r.returncode == 0, r.stderr
    conf = (tree / "etc/portage/repos.conf/eselect-repo.conf").read_text()
    assert "[guru]\nlocation = /var/db/repos/guru\n" in conf and "[haskell]" in conf
    for name in ("guru", "haskell"):
        assert (tree / f"var/db/repos/{name}/profiles/repo_name").read_text() == f"{name}\n"
    assert installed(tree) == {"app-eselect/eselect-repository", "dev-vcs/git"}
    assert world(tree) == []  # oneshot: the cleanup's depclean removes them
    assert calls(tree, "emaint") == ["sync -r guru", "sync -r haskell"]


def test_unknown_overlay_is_one_line(tree: Path) -> None:
    r = run(tree, hook(OVERLAYS), GENTOO_OVERLAYS="guru no-such-overlay")
    one_line_error(r, "gentoo:", "GENTOO_OVERLAYS", "'no-such-overlay'", "not found")
    assert calls(tree, "emaint") == ["sync -r guru"]


# ---------------------------------------------------------- 02-gentoo-04-install-desired-python


def test_python_targets_go_to_package_use_and_world_is_rebuilt(tree: Path) -> None:
    assert run(tree, hook(PYTHON)).returncode == 0  # none: nothing written or merged
    assert not (tree / "etc/portage/package.use").exists() and calls(tree, "emerge") == []
    r = run(tree, hook(PYTHON), GENTOO_PYTHON_TARGETS="python3_12 python3_13")
    assert r.returncode == 0, r.stderr
    assert (tree / "etc/portage/package.use/dib-python-targets").read_text() == (
        "*/* PYTHON_TARGETS: -* python3_12 python3_13\n*/* PYTHON_SINGLE_TARGET: -* python3_12\n"
    )
    emerges = calls(tree, "emerge")
    assert emerges[0].endswith("--oneshot --update --changed-use sys-apps/portage")
    assert emerges[1].endswith("--update --changed-use --deep @world")
    assert emerges[0].startswith("--binpkg-respect-use ")  # GENTOO_EMERGE_DEFAULT_OPTS
    assert installed(tree) == {"sys-apps/portage"} and world(tree) == []


# ---------------------------------------------------------------- bin/install-packages


def test_install_packages_merges_and_selects(tree: Path) -> None:
    r = run(tree, "install-packages app-admin/sudo sys-fs/dosfstools",
            GENTOO_EMERGE_DEFAULT_OPTS="--quiet --jobs=1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert calls(tree, "emerge-webrsync") == ["-q"]  # no tree yet: fetched first
    assert calls(tree, "emerge") == [
        "--quiet --jobs=1 --noreplace --changed-use app-admin/sudo sys-fs/dosfstools"
    ]
    assert installed(tree) == {"app-admin/sudo", "sys-fs/dosfstools"}
    assert world(tree) == ["app-admin/sudo", "sys-fs/dosfstools"]
    # the emerge environment: USE="-build", binary packages and sources under /tmp
    assert (tree / "var/db/pkg/app-admin/sudo/USE").read_text() == "USE=-build\n"
    assert (tree / "tmp/portage-pkgdir/app-admin/sudo.gpkg.tar").is_file()
    assert (tree / "tmp/portage-distdir/sudo.tar.xz").is_file()


def test_install_packages_without_environment_d_uses_the_same_defaults(tree: Path) -> None:
    """The -p packages: install-packages runs in the chroot without environment.d."""
    synced(tree)
    r = in_chroot(tree, GENTOO / "bin/install-packages", ARCH="amd64")  # no packages
    assert r.returncode == 0 and calls(tree, "emerge") == [], r.stderr
    runner = tree.parent / "plain"
    write(runner, "#!/bin/sh\nexec install-packages app-editors/vim\n", 0o755)
    r = in_chroot(tree, runner)
    assert r.returncode == 0, r.stderr
    assert calls(tree, "emerge")[0].startswith("--binpkg-respect-use --rebuilt-binaries=y")
    assert (tree / "tmp/portage-pkgdir/app-editors/vim.gpkg.tar").is_file()
    assert installed(tree) == {"app-editors/vim"}


def test_install_packages_e_deselects_and_depcleans(tree: Path) -> None:
    synced(tree)
    stage_package(tree, "sys-apps/baselayout", system=True)
    stage_package(tree, "dev-libs/libfoo")  # only app-misc/tool pulled it in
    for atom in ("app-misc/tool", "app-editors/vim"):
        stage_package(tree, atom)
    write(tree / "var/lib/portage/world", "app-misc/tool\napp-editors/vim\n")
    r = run(tree, "install-packages -e app-misc/tool app-admin/not-installed")
    assert r.returncode == 0, r.stderr
    assert world(tree) == ["app-editors/vim"]
    assert installed(tree) == {"sys-apps/baselayout", "app-editors/vim"}
    assert calls(tree, "emerge")[-1].endswith(" --depclean")


def test_install_packages_m_maps_names_through_pkg_map(tree: Path) -> None:
    synced(tree)
    maps = tree / "tmp/in_target.d/pkg-map"
    write(maps / "my-element.resolved", "vim app-editors/vim\nnothing\n")
    r = run(tree, "install-packages -m my-element vim nothing sys-fs/dosfstools")
    assert r.returncode == 0, r.stderr
    assert installed(tree) == {"app-editors/vim", "sys-fs/dosfstools"}
    # every name mapped to nothing: no emerge at all
    r = run(tree, "install-packages -m my-element nothing")
    assert r.returncode == 0, r.stderr
    assert len(calls(tree, "emerge")) == 1


def test_install_packages_u_updates_world_and_merges_config(tree: Path) -> None:
    synced(tree)
    stage_package(tree, "dev-libs/libfoo")
    r = run(tree, "install-packages -u", GENTOO_EMERGE_DEFAULT_OPTS="--quiet")
    assert r.returncode == 0, r.stderr
    assert calls(tree, "emerge") == [
        "--quiet --update --deep --changed-use @world",
        "--quiet --depclean",
        "--quiet --usepkg=n @preserved-rebuild",
    ]
    assert installed(tree) == set()  # nothing in world needed it
    assert calls(tree, "etc-update") == ["--automode -5"]


def test_install_packages_unknown_package_fails(tree: Path) -> None:
    r = run(tree, "install-packages app-misc/no-such-thing")
    assert r.returncode != 0
    assert 'no ebuilds to satisfy "app-misc/no-such-thing"' in r.stderr
    assert installed(tree) == set()


def test_install_packages_bad_options_are_one_line(tree: Path) -> None:
    r = run(tree, "install-packages app-admin/sudo", GENTOO_EMERGE_DEFAULT_OPTS="--quiet sudo")
    assert r.returncode != 0 and "'sudo' is not an option" in r.stderr
    r = in_chroot(tree, GENTOO / "bin/install-packages", GENTOO_EMERGE_DEFAULT_OPTS="-q x")
    one_line_error(r, "install-packages:", "GENTOO_EMERGE_DEFAULT_OPTS", "'x'")
    assert calls(tree, "emerge") == []


def test_install_packages_pkg_map_failure_is_reported(tree: Path) -> None:
    stand_in(tree, "pkg-map", 'echo "pkg-map: broken" >&2; exit 3')
    r = run(tree, "install-packages -m my-element vim")
    assert r.returncode != 0
    assert "gentoo: install-packages: pkg-map --element my-element could not map vim" in r.stderr
    assert calls(tree, "emerge") == []


# ---------------------------------------------------------------- post-install.d/99-cleanup


def built(tree: Path) -> None:
    """A tree after the install phases: packages merged, an overlay checked out."""
    assert run(tree, hook(SET_PROFILE)).returncode == 0
    r = run(tree, hook(OVERLAYS), GENTOO_OVERLAYS="guru")
    assert r.returncode == 0, r.stderr
    r = run(tree, "install-packages app-admin/sudo")
    assert r.returncode == 0, r.stderr
    assert (tree / "tmp/portage-distdir").is_dir() and (tree / "tmp/portage-pkgdir").is_dir()


def test_cleanup_removes_tree_overlays_distfiles_binpkgs(tree: Path) -> None:
    built(tree)
    write(tree / "var/cache/distfiles/old.tar.gz", "x")  # not the build's DISTDIR: kept
    r = run(tree, hook(CLEANUP), GENTOO_OVERLAYS="guru")
    assert r.returncode == 0, r.stderr
    for gone in (TREE, "/tmp/portage-distdir", "/tmp/portage-pkgdir", "/var/db/repos/guru"):
        assert not (tree / gone.lstrip("/")).exists(), gone
    assert (tree / "var/cache/distfiles/old.tar.gz").exists()
    # the build's oneshot tools are depcleaned, what was asked for stays
    assert installed(tree) == {"app-admin/sudo"}
    # make.profile points where the image's tree will be after an emerge --sync
    assert os.readlink(tree / "etc/portage/make.profile") == (
        f"../../var/db/repos/gentoo/profiles/{PROFILE}"
    )
    assert "all -f" in calls(tree, "emaint")
    assert calls(tree, "etc-update") == ["--automode -5"]


def test_cleanup_false_keeps_the_tree_where_portage_looks(tree: Path) -> None:
    built(tree)
    r = run(tree, hook(CLEANUP), GENTOO_PORTAGE_CLEANUP="False")
    assert r.returncode == 0, r.stderr
    home = tree / "var/db/repos/gentoo"
    assert (home / "profiles/repo_name").read_text() == "gentoo\n"
    assert (home / "app-admin/sudo").is_dir()
    assert (tree / "var/db/repos/guru/profiles").is_dir()
    assert not (tree / TREE.lstrip("/")).exists()
    assert (
        not (tree / "tmp/portage-distdir").exists() and not (tree / "tmp/portage-pkgdir").exists()
    )
    link = tree / "etc/portage/make.profile"
    assert link.resolve() == home / "profiles" / PROFILE and link.resolve().is_dir()


def test_cleanup_bad_value_is_one_line_and_removes_nothing(tree: Path) -> None:
    built(tree)
    r = in_chroot(tree, CLEANUP, GENTOO_PORTAGE_CLEANUP="no", PORTDIR=TREE)
    one_line_error(r, "gentoo:", "GENTOO_PORTAGE_CLEANUP='no'", "True", "False")
    assert (tree / TREE.lstrip("/") / "profiles").is_dir()
    assert (tree / "tmp/portage-pkgdir").is_dir()
