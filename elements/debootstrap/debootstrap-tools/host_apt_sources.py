"""Find the Debian archive the build host itself uses (runs on the build host).

Prints ``mirror=URI`` and ``security=URI`` lines (either may be missing) when the host
is Debian, read from its one-line ``*.list`` and deb822 ``*.sources`` files: the mirror
is a ``deb`` entry for one of the host's own release suites (or a suite alias such as
stable) that is not a security suite; the security archive is the entry for a
``*-security`` (or old-style ``*/updates``) suite.  Third-party repositories, ``cdrom:``
entries and disabled stanzas are ignored.

Usage: ``host_apt_sources.py [ROOT]`` (ROOT defaults to /, for tests).
"""

from __future__ import annotations

import sys
from pathlib import Path

ALIASES = {"stable", "testing", "unstable", "sid", "oldstable", "oldoldstable", "experimental"}


def os_release(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("etc/os-release", "usr/lib/os-release"):
        p = root / name
        if p.is_file():
            for line in p.read_text(errors="replace").splitlines():
                k, sep, v = line.partition("=")
                if sep:
                    out[k.strip()] = v.strip().strip("\"'")
            break
    return out


def one_line_entries(text: str) -> list[tuple[str, str]]:
    """(uri, suite) of the ``deb`` lines of a one-line-style sources file."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "[" in line and "]" in line:
            # options may contain spaces: "deb [arch=amd64 signed-by=/k.gpg] URI suite"
            head, _, rest = line.partition("[")
            line = head + rest.partition("]")[2]
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            out.append((parts[1], parts[2]))
    return out


def deb822_entries(text: str) -> list[tuple[str, str]]:
    out = []
    stanzas: list[dict[str, str]] = [{}]
    key = ""
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if stanzas[-1]:
                stanzas.append({})
            continue
        if raw[0] in " \t" and key:
            stanzas[-1][key] += " " + raw.strip()
            continue
        k, sep, v = raw.partition(":")
        if sep:
            key = k.strip().lower()
            stanzas[-1][key] = v.strip()
    for st in stanzas:
        if st.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in st.get("types", "").split():
            continue
        for uri in st.get("uris", "").split():
            for suite in st.get("suites", "").split():
                out.append((uri, suite))
    return out


def host_sources(root: Path) -> tuple[str | None, str | None]:
    rel = os_release(root)
    if rel.get("ID") != "debian":
        return None, None
    codename = rel.get("VERSION_CODENAME", "")
    etc = root / "etc/apt"
    entries: list[tuple[str, str]] = []
    files = [etc / "sources.list"] + sorted((etc / "sources.list.d").glob("*.list"))
    for f in files:
        if f.is_file():
            entries += one_line_entries(f.read_text(errors="replace"))
    for f in sorted((etc / "sources.list.d").glob("*.sources")):
        entries += deb822_entries(f.read_text(errors="replace"))
    mirror = security = None
    for uri, suite in entries:
        if uri.startswith("cdrom:"):
            continue
        base = suite.split("/")[0].split("-")[0]
        if base != codename and base not in ALIASES:
            continue
        is_security = suite.endswith("-security") or suite.endswith("/updates")
        if is_security:
            security = security or uri
        else:
            mirror = mirror or uri
    return mirror, security


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path("/")
    mirror, security = host_sources(root)
    if mirror:
        print(f"mirror={mirror}")
    if security:
        print(f"security={security}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
