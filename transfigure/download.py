"""Downloading published weights into a cache, never leaving a bad file behind.

A file appears at its destination only once it arrived whole and matched the
expected size and checksum: it is streamed to a hidden temporary name in the
same folder and renamed into place, so an interrupted, truncated or corrupted
download is never mistaken for a cached one on the next run.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .tempfiles import temporary_path
from .errors import SetupError

__all__ = ["DownloadError", "cache_dir", "download"]


class DownloadError(SetupError):
    """A failed download; the message names the URL, the reason and what to do instead."""


def cache_dir() -> Path:
    """Where downloaded weights are kept: $TRANSFIGURE_CACHE, else ~/.cache/transfigure."""
    return Path(os.environ.get("TRANSFIGURE_CACHE") or Path.home() / ".cache" / "transfigure").expanduser()


def partial_path(dest: str | os.PathLike) -> Path:
    """Where a resumable download of `dest` keeps what has arrived so far."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, size: int | None = None,
             progress: bool = True, hint: str = "", timeout: float = 30.0, sha256_prefix: str | None = None,
             validate=None, resume: bool = False) -> Path:
    """Fetch `url` to `dest` (always downloads; callers decide what is cached) and return
    `dest`. Checks the byte count against the server's Content-Length and `size`, and
    the content against `sha256` (or its start, `sha256_prefix`, torch.hub's file
    naming convention), when given. `validate(path)`, when given, must accept the
    received file (e.g. load it) before it is renamed into place: a server that sends
    no length can cut a body short unnoticed. Raises DownloadError naming the URL, with
    `hint` (e.g. "offline? pass --weights PATH") appended; `dest` is then left as it was.

    With `resume`, what arrived is kept in `partial_path(dest)` when a transfer breaks,
    and the next call asks the server for the rest (an HTTP Range request); a server
    that answers with the whole file starts it over. A file that then fails a check is
    deleted, so the next call starts afresh."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def error(reason: str) -> DownloadError:
        return DownloadError(f"cannot download {url}: {reason}" + (f". {hint}" if hint else ""))

    tmp = partial_path(dest) if resume else temporary_path(dest)
    keep_partial = False
    try:
        digest, received, announced = hashlib.sha256(), 0, None
        have = tmp.stat().st_size if resume and tmp.is_file() else 0
        with open(tmp, "r+b" if have else ("wb" if resume else "xb")) as f:
            try:
                headers = {"User-Agent": "transfigure", **({"Range": f"bytes={have}-"} if have else {})}
                request = urllib.request.Request(url, headers=headers)
                try:
                    response = urllib.request.urlopen(request, timeout=timeout)
                except urllib.error.HTTPError as e:
                    if e.code != 416 or not have:  # 416: nothing left to send, the part is whole
                        raise
                    response = None
                if response is None or response.status == 206:
                    while chunk := f.read(1 << 20):  # the part already here counts towards the checks
                        digest.update(chunk)
                        received += len(chunk)
                else:
                    f.truncate(0)  # the server sent the whole file: start over
                with response or contextlib.nullcontext(), tqdm(total=size, initial=received, unit="B", unit_scale=True,
                                                unit_divisor=1024, desc=dest.name, disable=not progress,
                                                leave=False) as bar:
                    length = response.headers.get("Content-Length") if response else "0"
                    announced = received + int(length) if length and length.strip().isdigit() else None
                    bar.total = bar.total or announced
                    keep_partial = resume
                    while response and (chunk := response.read(1 << 20)):
                        f.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                    keep_partial = False
            except urllib.error.HTTPError as e:
                raise error(f"HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:  # refused, DNS failure, no route, bad scheme
                raise error(str(e.reason)) from e
            except (OSError, http.client.HTTPException) as e:  # reset or timeout mid-transfer
                raise error(f"{type(e).__name__}: {e}" + ("; run the same command again to resume"
                                                           if keep_partial else "")) from e
            f.flush()
            os.fsync(f.fileno())
        # http.client returns a short body silently when the connection closes early.
        if announced is not None and received != announced:
            keep_partial = resume
            raise error(f"connection closed after {received} of {announced} bytes"
                        + ("; run the same command again to resume" if resume else ""))
        if size is not None and received != size:
            raise error(f"received {received} bytes, expected {size}")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise error(f"sha256 {digest.hexdigest()} does not match the expected {sha256.lower()}")
        if sha256_prefix is not None and not digest.hexdigest().startswith(sha256_prefix.lower()):
            raise error(f"sha256 {digest.hexdigest()} does not start with the expected {sha256_prefix.lower()}")
        if validate is not None:
            try:
                validate(tmp)
            except Exception as e:
                raise error(f"the {received} bytes received are not a usable file ({type(e).__name__}: {e}); "
                            "the transfer was probably cut short, try again") from e
        os.replace(tmp, dest)
    except BaseException:
        if not keep_partial:
            tmp.unlink(missing_ok=True)
        raise
    return dest

