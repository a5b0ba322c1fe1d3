"""``dibpy cache list|show|prune|clear``: the installed-tree cache, seen and bounded."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from dibpy import treecache
from dibpy.cli import add_version, entry, examples, make_parser
from dibpy.config import parse_age, parse_gib_size
from dibpy.errors import ConfigError

MIB = 1024 * 1024


def _row(e: treecache.Entry, now: float) -> str:
    used = treecache.human_age(now - e.last_used)
    after = "image" if e.kind == treecache.IMAGE else f"after {e.after}"
    kind = e.kind.lstrip(".")
    return (
        f"{e.key[:12]}  {after:20} {kind:5}  {e.size / MIB:8.0f} MiB  used {used:>7} ago  "
        f"{e.arch:6} {e.elements}"
    )


PROG = "dibpy cache"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = make_parser(
        prog,
        "The installed-tree cache in DIB_IMAGE_CACHE/dibpy-trees: list its "
        "entries, the trees kept after root.d, pre-install.d, install.d, post-install.d and "
        "post-root.d "
        "(most recently used first), show one, prune it to a size or age, or clear it.",
        examples(
            (f"{prog} list", "every entry, most recently used first"),
            (f"{prog} prune --max-size 20G --max-age 7d", "bound the cache"),
            (f"{prog} clear", "remove every entry"),
        ),
    )
    add_version(p)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--image-cache",
        default=os.environ.get("DIB_IMAGE_CACHE") or "~/.cache/image-create",
        metavar="DIR",
        help="the image cache (default: $DIB_IMAGE_CACHE, else ~/.cache/image-create)",
    )
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser(
        "list",
        parents=[common],
        help="every entry: key, checkpoint (after PHASE), size, last use, elements",
    )
    show = sub.add_parser(
        "show", parents=[common], help="one entry's metadata (KEY or a unique prefix of it)"
    )
    show.add_argument("key")
    prune = sub.add_parser("prune", parents=[common], help="remove least recently used entries")
    prune.add_argument("--max-size", metavar="SIZE", help="keep at most SIZE (GiB, or 500M)")
    prune.add_argument("--max-age", metavar="AGE", help="remove entries unused for AGE (2d, 6h)")
    sub.add_parser("clear", parents=[common], help="remove every entry")
    return p


def main_args(argv: Sequence[str], prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    cache_dir = Path(args.image_cache).expanduser()
    found = treecache.entries(cache_dir)
    now = time.time()
    if args.action == "list":
        for e in found:
            print(_row(e, now))
        total = sum(e.size for e in found)
        print(f"{len(found)} entries, {total / MIB:.0f} MiB in {cache_dir / 'dibpy-trees'}")
    elif args.action == "show":
        matches = [e for e in found if e.key.startswith(args.key)]
        if len(matches) != 1:
            what = "no entry" if not matches else f"{len(matches)} entries"
            raise ConfigError(
                f"{what} with key {args.key!r} in {cache_dir / 'dibpy-trees'}",
                hint="'dibpy cache list' shows the keys",
            )
        data = json.loads(matches[0].meta.read_text())
        if isinstance(data.get("hooks"), dict):
            data["hooks"] = treecache.hooks_delta_names(data["hooks"])
        print(json.dumps(data, indent=1))
    elif args.action == "prune":
        if args.max_size is None and args.max_age is None:
            raise ConfigError("prune: give --max-size, --max-age or both")
        removed: list[treecache.Entry] = []
        try:
            if args.max_age is not None:
                limit = parse_age(args.max_age)
                for e in found:
                    if now - e.last_used > limit and _remove(e):
                        removed.append(e)
            if args.max_size is not None:
                removed += treecache.prune_to_size(cache_dir, parse_gib_size(args.max_size))
        except ValueError as err:
            raise ConfigError(f"prune --max-size: {err}") from None
        except ConfigError as err:
            raise ConfigError(
                f"prune --max-age {args.max_age!r}: not an age", hint=err.hint
            ) from None
        for gone in removed:
            print(f"removed {_row(gone, now)}")
        print(f"{len(removed)} entries removed")
    else:
        cleared = [e for e in found if _remove(e)]
        print(f"{len(cleared)} entries removed")
    return 0


def _remove(e: treecache.Entry) -> bool:
    """Remove ``e`` unless a running build has it mounted (a layer), which is said."""
    if treecache.remove(e):
        return True
    print(f"kept {e.key[:12]}: a running build uses it (after {e.after})")
    return False


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    return entry(lambda a: main_args(a, prog), prog, argv)
