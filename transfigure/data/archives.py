"""Extracting downloaded dataset archives (zip, tar.gz) safely and atomically.

Every member is checked before anything is written: absolute paths, `..`,
links and devices are refused, so nothing lands outside the target. The archive
is extracted into a hidden folder beside the target and renamed into place only
when it is whole, so a truncated or corrupted archive leaves no dataset folder."""
from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from ..tempfiles import temporary_path


class ArchiveError(UsageError):
    """An archive that is damaged or holds a member that could write outside its folder."""


def _checked_name(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path; refused, nothing extracted")
    if ".." in path.parts:
        raise ArchiveError(f"{archive}: member {name!r} points outside the archive's folder ('..'); refused, "
                           "nothing extracted")
    return path


def _zip_members(archive: Path, z: zipfile.ZipFile) -> None:
    for info in z.infolist():
        _checked_name(info.filename, archive)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no file type
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"{archive}: member {info.filename!r} is a link or a special file; refused, nothing "
                               "extracted")


def _tar_members(archive: Path, t: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = t.getmembers()  # reads the whole archive: a truncated one fails here
    for m in members:
        _checked_name(m.name, archive)
        if not (m.isfile() or m.isdir()):
            raise ArchiveError(f"{archive}: member {m.name!r} is a link or a special file; refused, nothing "
                               "extracted")
    return members


def extract(archive: str | Path, target: str | Path) -> Path:
    """Extract `archive` so that its single top folder becomes `target` (the layout of the
    papers' archives: NAME.zip holds NAME/...). Returns `target`."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FileExistsError(f"{target}: already exists; remove it to extract {archive.name} again")
    staging = temporary_path(target)
    staging.mkdir(parents=True)
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    _zip_members(archive, z)
                    bad = z.testzip()  # every member's CRC: a corrupted archive fails here, before use
                    if bad is not None:
                        raise ArchiveError(f"{archive}: member {bad!r} is corrupted; download it again")
                    z.extractall(staging)
            else:
                with tarfile.open(archive, "r:*") as t:
                    members = _tar_members(archive, t)
                    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4
                    t.extractall(staging, members=members, **safe)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
            if isinstance(e, (FileNotFoundError, PermissionError)):
                raise
            raise ArchiveError(f"{archive}: damaged or cut short ({type(e).__name__}: {e}); download it "
                               "again") from None
        tops = [p for p in staging.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        root = tops[0] if len(tops) == 1 and tops[0].is_dir() else staging
        if root is staging:
            staging.rename(target)
        else:
            root.rename(target)
            shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
