"""disk-image-create's options and environment: parsed into one BuildConfig, bad values rejected
together with a clear message before any work starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dibpy.config import build_config, parse_gib_size
from dibpy.errors import ConfigError
from tests.conftest import REPO

DIC = [sys.executable, str(REPO / "bin" / "disk-image-create")]


def cfg(cli: dict[str, object] | None = None, env: dict[str, str] | None = None, els=("x",)):
    return build_config(cli or {}, list(els), env or {})


def test_defaults_match_diskimage_builder() -> None:
    c = cfg()
    assert c.image_name == "image"
    assert c.image_types == ("qcow2",)
    assert c.fs_type == "ext4"
    assert c.effective_root_label == "cloudimg-rootfs"
    assert c.min_tmpfs == 2
    assert c.install_type == "source"


def test_xfs_root_label_default() -> None:
    assert cfg(env={"FS_TYPE": "xfs"}).effective_root_label == "img-rootfs"


def test_command_line_beats_environment() -> None:
    c = cfg({"root_label": "cli"}, {"DIB_ROOT_LABEL": "env"})
    assert c.root_label == "cli"
    assert cfg({}, {"DIB_ROOT_LABEL": "env"}).root_label == "env"


def test_type_suffix_stripped_for_a_single_type(tmp_path: Path) -> None:
    c = cfg({"image_name": str(tmp_path / "x.qcow2")})
    assert c.output_base == tmp_path / "x"
    c = cfg({"image_name": str(tmp_path / "x.qcow2"), "image_types": "qcow2,raw"})
    assert c.output_base == tmp_path / "x.qcow2"


def test_packages_repeatable_and_comma_separated() -> None:
    assert cfg({"packages": ["a,b", "c"]}).packages == ("a", "b", "c")


def test_x_counts_like_dib_debug_trace() -> None:
    assert cfg({"debug_trace": 2}).debug_trace == 2
    assert cfg({}, {"DIB_DEBUG_TRACE": "1"}).debug_trace == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2", 2 * 1024**3), ("1.5", int(1.5 * 1024**3)), ("512M", 512 * 1024**2), ("3G", 3 * 1024**3)],
)
def test_image_size_units(value: str, expected: int) -> None:
    assert parse_gib_size(value) == expected


def test_all_bad_values_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        cfg(
            {"arch": "sparc99", "image_size": "big", "install_type": "magic"},
            {"FS_TYPE": "fat99", "DIB_OFFLINE": "perhaps"},
        )
    msg = str(e.value)
    for needle in ("-a", "sparc99", "--image-size", "--install-type", "FS_TYPE", "DIB_OFFLINE"):
        assert needle in msg


def test_no_elements_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no elements"):
        cfg(els=())


def test_bad_break_value() -> None:
    with pytest.raises(ConfigError, match="break"):
        cfg(env={"break": "sometimes"})


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-t", "qcow3", "tiny-os"], "qcow3"),
        (["-a", "sparc99", "tiny-os"], "sparc99"),
        (["--image-size", "huge", "tiny-os"], "--image-size"),
        (["tiny-oss"], "did you mean 'tiny-os'"),
        (["tiny-oss", "-t", "qcow3"], "qcow3"),
        ([], "no elements"),
    ],
)
def test_cli_bad_input_is_one_clear_error(tmp_path: Path, args: list[str], needle: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env["ELEMENTS_PATH"] = str(REPO / "tests" / "fixtures" / "pipeline-elements")
    env["TMP_DIR"] = str(tmp_path)
    r = subprocess.run(
        [*DIC, "-n", "-o", str(tmp_path / "img"), *args], capture_output=True, text=True, env=env
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert needle in r.stderr
    assert r.stderr.startswith("disk-image-create: error:"), r.stderr
    # nothing was started: no build directory, no output
    assert [p.name for p in tmp_path.iterdir()] == []


def test_image_cache_default_and_tilde_are_expanded() -> None:
    assert "~" not in str(cfg().image_cache)
    assert cfg().image_cache.is_absolute()
    assert "~" not in str(cfg(env={"DIB_IMAGE_CACHE": "~/x"}).image_cache)


@pytest.mark.parametrize(
    ("value", "sums"),
    [
        ("0", ()),
        ("1", ("md5", "sha256")),
        ("md5", ("md5",)),
        ("sha256", ("sha256",)),
        ("sha256,md5", ("md5", "sha256")),
        ("md5 sha256", ("md5", "sha256")),
    ],
)
def test_dib_checksum_means_what_it_means_in_diskimage_builder(value: str, sums: tuple) -> None:
    assert cfg(env={"DIB_CHECKSUM": value}).checksum == sums


def test_checksum_flag_is_both_sums_and_a_bad_checksum_is_named() -> None:
    assert cfg({"checksum": True}).checksum == ("md5", "sha256")
    with pytest.raises(ConfigError) as e:
        cfg(env={"DIB_CHECKSUM": "sha512"})
    assert "DIB_CHECKSUM" in str(e.value) and "sha512" in str(e.value)


def test_image_extra_size_is_in_megabytes() -> None:
    assert cfg({"image_extra_size": "500"}).image_extra_size == 500 * 1024**2
    assert cfg(env={"DIB_IMAGE_EXTRA_SIZE": "2G"}).image_extra_size == 2 * 1024**3
    with pytest.raises(ConfigError, match="DIB_IMAGE_EXTRA_SIZE"):
        cfg(env={"DIB_IMAGE_EXTRA_SIZE": "lots"})


@pytest.mark.parametrize(
    ("var", "field", "value", "expect"),
    [
        ("ROOT_LABEL", "root_label", "mylabel", "mylabel"),
        ("QEMU_IMG_OPTIONS", "qemu_img_options", "compat=0.10", "compat=0.10"),
        ("MAX_ONLINE_RESIZE", "max_online_resize", "1000", 1000),
        ("IMAGE_NAME", "image_name", "fromenv", "fromenv"),
        ("MKFS_OPTS", "mkfs_options", "-m 0", "-m 0"),
        ("DOCKER_TARGET", "docker_target", "repo:tag", "repo:tag"),
    ],
)
def test_diskimage_builders_variables_are_read(var: str, field: str, value: str, expect) -> None:
    assert getattr(cfg(env={var: value}), field) == expect


def test_version_answers_as_diskimage_builder_does() -> None:
    """Scripts compare `disk-image-create --version` with a diskimage-builder version."""
    from packaging.version import Version

    for tool in ("disk-image-create", "ramdisk-image-create"):
        r = subprocess.run(
            [sys.executable, str(REPO / "bin" / tool), "--version"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert Version(r.stdout.strip()) >= Version("3.43.0"), r.stdout


def test_options_a_build_will_not_use_are_warned_about() -> None:
    from dibpy.build import inapplicable_options

    xfs = cfg({"max_online_resize": "5000", "mkfs_journal_size": "32"}, {"FS_TYPE": "xfs"})
    found = inapplicable_options(xfs, no_final=False)
    assert any("--max-online-resize" in w and "xfs" in w for w in found)
    assert any("--mkfs-journal-size" in w for w in found)
    assert inapplicable_options(cfg({"max_online_resize": "5000"}), no_final=False) == []
    ramdisk = build_config({"image_size": "3", "checksum": True}, ["x"], {}, ramdisk=True)
    found = inapplicable_options(ramdisk, no_final=True)
    assert [w.split()[0] for w in found] == ["--image-size", "--checksum"]
    assert all("ramdisk" in w for w in found)
    assert inapplicable_options(cfg(), no_final=True) == []


@pytest.mark.parametrize(
    ("given", "arch"),
    [("x86_64", "amd64"), ("aarch64", "arm64"), ("ppc64le", "ppc64el"), ("ppc64", "ppc64"),
     ("powerpc", "powerpc"), ("i686", "i386")],
)  # fmt: skip
def test_every_architecture_diskimage_builder_takes(given: str, arch: str) -> None:
    from dibpy.config import parse_arch

    assert parse_arch(given) == arch


def test_an_unknown_architecture_is_refused_with_the_known_ones() -> None:
    from dibpy.config import parse_arch

    with pytest.raises(ValueError, match="unknown architecture 'sparc'.*ppc64"):
        parse_arch("sparc")


def test_dib_block_size_is_checked_and_reaches_the_loop_device(tmp_path: Path) -> None:
    from dibpy.blockdev import load_config
    from dibpy.build import _bd_params

    with pytest.raises(ConfigError, match=r"DIB_BLOCK_SIZE: 'lots' is not .*512 or 4096"):
        cfg(env={"DIB_BLOCK_SIZE": "lots"})
    with pytest.raises(ConfigError, match="DIB_BLOCK_SIZE"):
        cfg(env={"DIB_BLOCK_SIZE": "1024"})
    c = cfg(env={"DIB_BLOCK_SIZE": "4096"})
    params = _bd_params(c, tmp_path, 1024**3)
    # as in diskimage-builder, the variable wins over a config's own block_size
    for text in ("- local_loop: {name: image0}", "- local_loop: {name: image0, block_size: 512}"):
        node = load_config(text, params, host_checks=False).nodes["image0"]
        assert node.block_size == 4096  # type: ignore[attr-defined]
    plain = _bd_params(cfg(), tmp_path, 1024**3)
    text = "- local_loop: {name: image0, block_size: 4096}"
    assert load_config(text, plain, host_checks=False).nodes["image0"].block_size == 4096  # type: ignore[attr-defined]
    text = "- local_loop: {name: image0}"
    assert load_config(text, plain, host_checks=False).nodes["image0"].block_size == 512  # type: ignore[attr-defined]


# -- one declaration per setting --------------------------------------------------------


def test_each_setting_is_one_build_config_field_and_back() -> None:
    """Every setting's destination is a BuildConfig field (whose default is the only
    one), and every field but the build's own facts is a setting."""
    import dataclasses

    from dibpy.config import SETTINGS, BuildConfig

    fields = {f.name for f in dataclasses.fields(BuildConfig)}
    dests = [s.dest for s in SETTINGS]
    assert len(dests) == len(set(dests))
    assert set(dests) <= fields
    assert fields - set(dests) == {"elements", "environ", "argv", "ramdisk"}


def test_the_yaml_front_end_keys_come_from_the_settings() -> None:
    from dibpy import yamlbuild
    from dibpy.config import SETTINGS

    assert set(yamlbuild.KEYS) == set(yamlbuild.ORDER)
    for s in SETTINGS:
        if s.yaml:
            assert yamlbuild.KEYS[s.yaml] == (s.flags[0], s.yaml_argument), s.dest


#: a value for each setting that has both a flag and a variable, as a user would type it
ROUND_TRIP = {
    "image_name": "/tmp/x/img",
    "arch": "arm64",
    "debug_trace": "2",
    "checksum": "1",
    "image_size": "3",
    "image_extra_size": "200",
    "image_cache": "/var/cache/dib",
    "max_online_resize": "1000",
    "min_tmpfs": "4",
    "mkfs_options": "-O ^has_journal",
    "mkfs_journal_size": "32",
    "qemu_img_options": "compat=1.1,cluster_size=2M",
    "root_label": "myroot",
    "ramdisk_element": "dracut-ramdisk",
    "install_type": "package",
    "no_cache": "1",
    "docker_target": "repo/img:tag",
    "logfile": "/tmp/x/build.log",
    "offline": "1",
    "strict": "1",
    "no_tmpfs": "1",
}


@pytest.mark.parametrize("dest", sorted(ROUND_TRIP))
def test_a_flag_and_its_variable_give_the_same_setting(dest: str, tmp_path: Path) -> None:
    """Round trip: the value given by flag, by each of its variables, and the default."""
    from dibpy.config import SETTINGS

    (s,) = [s for s in SETTINGS if s.dest == dest]
    assert s.flags and s.env_names, dest
    value = ROUND_TRIP[dest]
    if s.kind == "flag":
        cli: object = True
    elif s.kind == "count":
        cli = int(value)
    else:
        cli = value
    by_flag = getattr(build_config({s.dest: cli}, ["x"], {}), dest)
    for var in s.env_names:
        assert getattr(build_config({}, ["x"], {var: value}), dest) == by_flag, var
    assert by_flag != s.default, dest
    if dest != "arch":  # the host's when not given
        assert getattr(build_config({}, ["x"], {}), dest) == s.default, dest
