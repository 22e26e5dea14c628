"""Writing files safely: output folders checked before any work, and temporary
names for files written whole, then renamed onto their target.

The name is short, so it fits the file system's 255-byte limit whatever the
target is called, and it carries the writer's process id, so the next run
writing into that folder removes what a killed run left behind."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from .errors import UsageError

PREFIX = ".transfigure-"
_PATTERN = re.compile(re.escape(PREFIX) + r"(\d+)-[0-9a-f]+\.tmp")
_swept: set[Path] = set()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Remove the temporary files of writers that are no longer running (a killed run's);
    once per folder and process."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _swept or not folder.is_dir():
        return []
    _swept.add(key)
    removed = []
    for path in folder.iterdir():
        match = _PATTERN.match(path.name)
        if match and path.is_file() and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def temporary_path(target: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """A hidden name beside `target` (the same file system, so the final rename is
    atomic); `keep_suffix` ends it with the target's extension, for writers that pick
    the format by it."""
    target = Path(target)
    remove_stale(target.parent)
    return target.with_name(f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"
                            f"{target.suffix if keep_suffix else ''}")


def check_output_folder(output_dir: str | os.PathLike, option: str = "--output") -> None:
    """Refuse, before any work, an output folder that is a file, would be made under a
    file, or lies where this user cannot write (`option` names it in the message)."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"{option} {output_dir}: is a file; give a folder for the results")
    existing = next(p for p in (output_dir, *output_dir.parents) if p.exists())  # the folder that will hold it
    if not existing.is_dir():
        raise UsageError(f"{option} {output_dir}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {output_dir}: no permission to write in {existing}; choose another folder")
