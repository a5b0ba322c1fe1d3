import pytest

from dibpy.blockdev.units import parse_rel_size, parse_size
from dibpy.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4096, 4096),
        ("4096", 4096),
        ("1KiB", 1024),
        ("1MiB", 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1TiB", 1024**4),
        ("1KB", 1000),
        ("1MB", 1000**2),
        ("3GB", 3 * 1000**3),
        ("1TB", 1000**4),
        ("1K", 1000),
        ("1M", 1000**2),
        ("1G", 1000**3),
        ("1T", 1000**4),
        ("1.5GiB", 3 * 1024**3 // 2),
        (" 8 MiB ", 8 * 1024**2),
        ("100B", 100),
    ],
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MiB", "1XB", "-1MiB", "1 2", None, [1], True])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(bad)


def test_unknown_unit_suggests_the_right_case() -> None:
    with pytest.raises(ConfigError, match="did you mean 'MiB'"):
        parse_size("8mib")


def test_percent() -> None:
    assert parse_rel_size("50%", 1000) == 500
    assert parse_rel_size("100%", 1000) == 1000
    assert parse_rel_size("8MiB", 1000) == 8 * 1024**2
    for bad in ("0%", "101%"):
        with pytest.raises(ConfigError):
            parse_rel_size(bad, 1000)
