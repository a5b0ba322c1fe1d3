"""What the source-repositories element will fetch, as fingerprints for the tree cache.

Reads every ``source-repository-*`` file of the build's elements with the same rules as
``elements/source-repositories/extra-data.d/98-source-repositories`` (``DIB_REPOTYPE_``,
``DIB_REPOLOCATION_`` and ``DIB_REPOREF_`` overrides, names with other characters than
``[A-Za-z0-9_]`` turned into ``_``; no ref is ``master``, else the repository's HEAD) and
resolves each entry to what it points at now:

* git: the commit ``git ls-remote`` gives for the ref (a local repository path works the
  same way); offline, the ref in the element's local mirror under the image cache;
* tar/file: a local file's sha256, a local directory's content hash, or for a URL the
  server's validator (ETag, Last-Modified, size) from a HEAD request;
* package entries install nothing from here and count only through the element's files.

An entry that cannot be resolved is fingerprinted as ``unresolved`` and a warning says so.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from dibpy import run
from dibpy.elements.model import Element
from dibpy.errors import CommandError

LOG = logging.getLogger("dibpy")
UNRESOLVED = "unresolved"


def entries(
    elements: Iterable[Element], environ: Mapping[str, str]
) -> list[tuple[str, str, str, str]]:
    """(name, type, location, ref) of every entry, overrides applied, in hook order."""
    out = []
    for el in sorted(elements, key=lambda e: e.name):
        for f in sorted(Path(el.path).glob("source-repository-*")):
            if not f.is_file():
                continue
            for line in f.read_text(errors="replace").splitlines():
                parts = line.split()
                if not parts or parts[0].startswith("#") or len(parts) < 4:
                    continue
                name, rtype, _dest, location = parts[:4]
                ref = " ".join(parts[4:])
                var = re.sub(r"[^A-Za-z0-9_]", "_", name)
                rtype = environ.get(f"DIB_REPOTYPE_{var}") or rtype
                location = environ.get(f"DIB_REPOLOCATION_{var}") or location
                ref = environ.get(f"DIB_REPOREF_{var}") or ref
                out.append((name, rtype, location, ref))
    return out


def _mirror(cache_dir: Path, location: str) -> Path:
    # the same name the element's hook gives its mirror
    tag = hashlib.sha256(location.encode()).hexdigest()[:16]
    base = os.path.basename(location.rstrip("/"))
    base = base[:-4] if base.endswith(".git") else base
    return cache_dir / "source-repositories" / f"{tag}-{base}.git"


def _pick(listing: str, ref: str) -> str | None:
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if name:
            refs[name.strip()] = sha.strip()
    if ref == "*":
        return hashlib.sha256(listing.encode()).hexdigest()[:40] if refs else None
    if not ref:
        return refs.get("refs/heads/master") or refs.get("HEAD")
    if re.fullmatch(r"[0-9a-f]{7,40}", ref):
        return ref
    for cand in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
        if cand in refs:
            return refs[cand]
    return None


def _git_rev(location: str, ref: str, cache_dir: Path | None, offline: bool) -> str | None:
    where = location
    if offline:
        if cache_dir is None or not _mirror(cache_dir, location).is_dir():
            return None
        where = str(_mirror(cache_dir, location))
    try:
        res = run.run(
            ["git", "ls-remote", where],
            env={"GIT_TERMINAL_PROMPT": "0"},
            quiet=True,
        )
    except (CommandError, OSError) as e:
        LOG.warning("tree cache: git ls-remote %s failed: %s", location, str(e).splitlines()[0])
        return None
    return _pick(res.stdout, ref)


def path_hash(p: Path) -> str:
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()
    for q in sorted(p.rglob("*")):
        if ".git" in q.relative_to(p).parts[:1]:
            continue
        if q.is_symlink():
            h.update(f"link {q.relative_to(p)} {os.readlink(q)}\n".encode())
        elif q.is_file():
            h.update(f"file {q.relative_to(p)}\n".encode())
            h.update(q.read_bytes())
    return h.hexdigest()


def url_validator(location: str, offline: bool) -> str | None:
    local = location[7:] if location.startswith("file://") else location
    if local.startswith("/"):
        return path_hash(Path(local)) if os.path.exists(local) else None
    if offline or not location.startswith(("http://", "https://")):
        return None
    try:
        req = urllib.request.Request(location, method="HEAD")
        with urllib.request.urlopen(req, timeout=20) as r:
            v = " ".join(
                f"{k}={r.headers[k]}"
                for k in ("ETag", "Last-Modified", "Content-Length")
                if r.headers.get(k)
            )
    except OSError as e:
        LOG.warning("tree cache: HEAD %s failed: %s", location, e)
        return None
    return hashlib.sha256(v.encode()).hexdigest()[:40] if v else None


def repo_inputs(
    elements: Iterable[Element],
    environ: Mapping[str, str],
    cache_dir: Path | None,
    *,
    offline: bool = False,
) -> dict[str, str]:
    """``{"source repository NAME": revision}`` for every entry (see the module docstring)."""
    elements = list(elements)
    if not any(e.name == "source-repositories" for e in elements):
        return {}
    out: dict[str, str] = {}
    for name, rtype, location, ref in entries(elements, environ):
        rev: str | None
        if rtype == "git":
            local = Path(location)
            if local.is_dir() and not (local / ".git").exists() and not (local / "HEAD").exists():
                rev = path_hash(local)  # a plain directory
            else:
                rev = _git_rev(location, ref, cache_dir, offline)
        elif rtype in ("tar", "file"):
            rev = url_validator(location, offline)
        else:
            continue
        if rev is None:
            LOG.warning(
                "tree cache: source repository %s (%s %s) could not be resolved; "
                "its revision is not in the cache key",
                name,
                location,
                ref or "default ref",
            )
            rev = UNRESOLVED
        out[f"source repository {name}"] = rev
    return out
