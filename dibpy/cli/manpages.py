"""Man pages, generated from the commands' argparse parsers with argparse-manpage.

``python -m dibpy.cli.manpages [DIR]`` writes one page per command into DIR (default
``man/man1`` of the checkout); the pages are committed and installed with the package
(setup.cfg's data_files), and a unit test regenerates them and fails when they differ.
The epilog of each parser (its ``name:`` sections and examples) becomes sections of the
page; nothing in them depends on this host (see :func:`dibpy.cli.static_docs`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dibpy import __version__

Factory = Callable[[], argparse.ArgumentParser]


def _factory(module: str, prog: str, func: str = "build_parser") -> Factory:
    def make() -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = getattr(importlib.import_module(module), func)(prog)
        return parser

    return make


def _dibpy() -> argparse.ArgumentParser:
    from dibpy.cli.main import build_parser

    return build_parser()


def pages() -> dict[str, tuple[Factory, str]]:
    """Page name -> (its parser, its one-line summary): every console script, and each
    ``dibpy`` subcommand that has no command of its own (``man dibpy-boot-test``)."""
    from dibpy.cli.main import COMMANDS

    out: dict[str, tuple[Factory, str]] = {
        "disk-image-create": (
            _factory("dibpy.cli.disk_image_create", "disk-image-create"),
            "build a disk image from elements",
        ),
        "ramdisk-image-create": (
            _factory("dibpy.cli.disk_image_create", "ramdisk-image-create"),
            "build a ramdisk from elements",
        ),
        "element-info": (
            _factory("dibpy.cli.element_info", "element-info"),
            "expand and show elements",
        ),
        "dib-block-device": (
            _factory("dibpy.cli.block_device", "dib-block-device"),
            "create and tear down a build's block device",
        ),
        "dib-run-parts": (
            _factory("dibpy.cli.run_parts", "dib-run-parts"),
            "run the hooks of one directory",
        ),
        "dib-lint": (_factory("dibpy.cli.lint", "dib-lint"), "check elements"),
        "diskimage-builder": (
            _factory("dibpy.cli.diskimage_builder", "diskimage-builder"),
            "build the images a YAML file describes",
        ),
        "dibpy": (_dibpy, "build disk images from diskimage-builder elements"),
    }
    standalone = {"build", "ramdisk", "element-info", "run-parts", "block-device", "lint"}
    for cmd, (module, _, helptext) in COMMANDS.items():
        if cmd not in standalone:
            out[f"dibpy-{cmd}"] = (_factory(module, f"dibpy {cmd}"), helptext)
    return out


def _roff_escape(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    # a line starting with . or ' would be a request
    return "\\&" + text if text[:1] in (".", "'") else text


def _section_content(lines: Sequence[str], examples: bool) -> str:
    """An epilog section as roff: examples as tagged paragraphs (command, then what it
    does), other indented lines kept as they are, prose filled."""
    out: list[str] = []
    if examples:
        i = 0
        while i < len(lines):
            cmd = lines[i].strip()
            what = lines[i + 1].strip() if i + 1 < len(lines) else ""
            out += [".TP", f".B {_roff_escape(cmd)}", _roff_escape(what)]
            i += 2
        return "\n".join(out)
    verbatim = [ln for ln in lines if ln.startswith(" ")]
    if verbatim and len(verbatim) == len(lines):
        out.append(".nf")
        out += [_roff_escape(ln[2:] if ln.startswith("  ") else ln) for ln in lines]
        out.append(".fi")
    else:
        out.append(_roff_escape(" ".join(ln.strip() for ln in lines)))
    return "\n".join(out)


def _epilog_sections(epilog: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Split an epilog into its untitled paragraphs and its ``heading:`` sections."""
    prose: list[str] = []
    sections: list[tuple[str, str]] = []
    for block in epilog.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if lines[0].endswith(":") and not lines[0].startswith(" "):
            heading = lines[0][:-1]
            title = heading.split(" (", 1)[0]
            body = lines[1:]
            if "(" in heading:
                # "output types (-t, ...):": the parenthesis opens the section's text
                body = ["  " + heading[len(title) :].strip(" ()")] + body
            examples = title == "examples"
            sections.append((title, _section_content(body, examples) if body else ""))
        else:
            prose.append(" ".join(ln.strip() for ln in lines))
    return prose, sections


@contextmanager
def _static_environment() -> Iterator[None]:
    """Help text that does not depend on this host, this terminal or its plugins."""
    saved = {k: os.environ.get(k) for k in ("DIBPY_STATIC_DOCS", "COLUMNS")}
    os.environ["DIBPY_STATIC_DOCS"] = "1"
    os.environ["COLUMNS"] = "80"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def render(name: str) -> str:
    """The roff text of one page."""
    from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

    factory, summary = pages()[name]
    with _static_environment():
        parser = factory()
        prose, sections = _epilog_sections(parser.epilog or "")
        parser.epilog = "\n\n".join(prose) or None
        page = Manpage(parser)
        # reproducible: no build date; the version says which dibpy the page describes
        page.date = ""
        page.source = f"dibpy {__version__}"
        page.manual = "dibpy manual"
        page.description = summary
        # the page's name (dibpy-boot-test) for its title; the synopsis keeps the command
        page.prog = name
        for heading, content in sections:
            page.add_section(heading, "=", content)
        text = str(page)
    return text


def default_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "man" / "man1"


def generate(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in pages():
        target = out_dir / f"{name}.1"
        target.write_text(render(name))
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0]) if args else default_dir()
    for p in generate(out_dir):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
