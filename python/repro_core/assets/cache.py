"""The model cache: where the converted default model lives, its manifest, and the checks that run before it is
trusted.

Every load checks the entry against its manifest: each file's size, the sha256 of every file but the weights (a
few MB: milliseconds), and of the weights (``*.safetensors``, 540 MB) the header, whose sha256 is recorded too and
whose offsets must end where the file ends. So a ``config.json`` edited in place (30 layers to 10, same size) or a
tensor renamed in the header is caught at once; a flipped bit among the weights' values is caught only by the
full check, ``verify`` (``repro cache verify``), which reads everything. An entry whose manifest is missing,
unreadable or contradicted is converted again by the caller, with a warning naming the directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..outputs import Lock, lock, write_atomic
from . import fetch
from .fetch import DEFAULT_MODEL, DEFAULT_MODEL_FILE, sha256_of

__all__ = ["MANIFEST", "cache_dir", "lock_path", "problem", "remove_stale", "remove_stale_unless_converting",
           "safetensors_header", "staging_prefix", "verify", "write_manifest"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# What a cache entry needs to load; an entry without a manifest is adopted only if these are whole.
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# Files too large to hash on every load: their size and header are checked instead.
_WEIGHTS = ".safetensors"


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$REPRO_CACHE`` if set, else ``$XDG_CACHE_HOME/repro-core``,
    else ``~/.cache/repro-core``. Not created here."""
    if override := os.environ.get("REPRO_CACHE"):
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore relative values.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "repro-core"


def problem(target: Path) -> str | None:
    """What is wrong with the cache entry ``target`` (None: nothing), by its manifest; "missing" when absent."""
    if not target.is_dir():
        return "missing" if not os.path.lexists(target) else "not a directory"
    try:
        files = _manifest_files(target)
    except FileNotFoundError:
        return _adopt(target)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"{MANIFEST} unreadable: {type(exc).__name__}"
    if not set(_REQUIRED) <= files.keys():
        return f"{MANIFEST} lists no {', '.join(sorted(set(_REQUIRED) - files.keys()))}"
    for name, entry in files.items():
        path = target / name
        try:
            found = path.stat().st_size
            if found != entry["size"]:
                return f"{name} has {found} bytes, {MANIFEST} says {entry['size']}"
            if name.endswith(_WEIGHTS):
                header = safetensors_header(path)
                if "header_sha256" in entry and hashlib.sha256(header).hexdigest() != entry["header_sha256"]:
                    return f"{name}'s header (its tensors' names, shapes and offsets) differs from {MANIFEST}'s"
            else:
                with open(path, "rb") as file:
                    if sha256_of(file) != entry["sha256"]:
                        return f"{name} differs from {MANIFEST} (sha256)"
        except FileNotFoundError:
            return f"{name} missing"
        except (OSError, ValueError) as exc:
            return f"{name} is unreadable: {exc}"
    return None


def verify(target: Path) -> list[str]:
    """Every file of the entry ``target`` hashed in full against its manifest: the problems found (none: [])."""
    files = _manifest_files(target)
    problems = []
    for name, entry in files.items():
        try:
            with open(target / name, "rb") as file:
                if sha256_of(file) != entry["sha256"]:
                    problems.append(f"{name}: sha256 differs from {MANIFEST}")
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
    return problems


def _manifest_files(target: Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files``, each with an int ``size`` and a ``sha256``; raises on anything malformed."""
    files = json.loads((target / MANIFEST).read_text(encoding="utf-8"))["files"]
    checked = {}
    for name, entry in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{name!r} is no file of the entry")
        checked[name] = {**entry, "size": int(entry["size"]), "sha256": str(entry["sha256"])}
    return checked


def _adopt(target: Path) -> str | None:
    """An entry converted before manifests existed: if whole, write its manifest (once) and trust it."""
    for name in _REQUIRED:
        if not (target / name).is_file():
            return f"no {MANIFEST} and {name} missing"
    for name in _REQUIRED:
        try:
            if name.endswith(".json"):
                json.loads((target / name).read_text(encoding="utf-8"))
            else:
                safetensors_header(target / name)
        except (OSError, ValueError) as exc:
            return f"no {MANIFEST}, and {name} is unreadable: {exc}"
    try:
        write_manifest(target)
        logger.info("wrote %s for the cached %s at %s (made before manifests)", MANIFEST, DEFAULT_MODEL, target)
    except OSError as exc:  # a read-only copy: trusted on its whole files, checked again next time
        logger.debug("cannot write %s in %s: %s", MANIFEST, target, exc)
    return None


def safetensors_header(path: Path) -> bytes:
    """The header of a safetensors file (its 8-byte length and the JSON after it); ValueError unless the file is
    exactly as long as the header says (the tensors end where the file ends)."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        prefix = file.read(8)
        length = int.from_bytes(prefix, "little")
        if size < 8 or 8 + length > size:
            raise ValueError(f"truncated to {size} bytes")
        raw = file.read(length)
    header = json.loads(raw)
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != 8 + length + end:
        raise ValueError(f"{size} bytes, its header says {8 + length + end}")
    return prefix + raw


def write_manifest(directory: Path) -> None:
    """Every file's size and sha256 (and a weights file's header sha256) in ``MANIFEST``, written after the files
    are on disk, atomically."""
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith((MANIFEST, "."))):
        with open(path, "rb") as file:
            entry: dict[str, Any] = {"size": path.stat().st_size, "sha256": sha256_of(file)}
            os.fsync(file.fileno())  # the files reach the disk before the manifest that vouches for them
        if path.name.endswith(_WEIGHTS):
            entry["header_sha256"] = hashlib.sha256(safetensors_header(path)).hexdigest()
        files[path.name] = entry
    manifest = {"model": DEFAULT_MODEL, "source": DEFAULT_MODEL_FILE, "source_sha256": fetch.DEFAULT_MODEL_SHA256,
                "files": files}
    # A temporary name of its own: two processes adopting the same entry must not write into one partial file.
    write_atomic(directory / MANIFEST, json.dumps(manifest, indent=1))


# The staging folders of conversions, and the lock that says which are alive.


def lock_path(target: Path) -> Path:
    """The lock file a conversion of ``target`` holds."""
    return target.parent / f".{target.name}.lock"


def staging_prefix(target: Path) -> str:
    """The name a conversion's staging folder beside ``target`` starts with."""
    return f".{target.name}.tmp-"


def remove_stale(target: Path) -> None:
    """Remove the staging folders of killed conversions; the caller holds the lock, so no live one is among them."""
    for path in sorted(target.parent.glob(f"{staging_prefix(target)}*")):
        logger.warning("removing %s, left by an interrupted conversion of %s", path, DEFAULT_MODEL)
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_unless_converting(target: Path) -> None:
    """Remove killed conversions' staging folders beside a good entry, unless a live conversion holds the lock (or
    the filesystem cannot say: then they are left, with a warning)."""
    if not any(target.parent.glob(f"{staging_prefix(target)}*")) or not os.access(target.parent, os.W_OK):
        return
    with lock(lock_path(target), wait=False) as (state, error):
        if state is Lock.HELD:
            remove_stale(target)
        elif state is Lock.UNSUPPORTED:
            logger.warning("leaving the %s* folders in %s: cannot lock %s (%s), so cannot tell whether a conversion "
                           "still writes them; set REPRO_CACHE to a folder on a filesystem with file locks",
                           staging_prefix(target), target.parent, lock_path(target), error)
