"""Where Stickler writes what it makes (traces, regressions, reports): checked before
anything is read or written, so a bad output path is an input error with nothing left
behind, and nothing but a regular file is ever replaced.

`check_output(path, key, force=...)` refuses: an existing file without `force`; anything
that is not a regular file (a device such as /dev/full, a directory, a FIFO), even with
`force`; a symbolic link (its target is named instead: writing through it would replace
something the user did not name); the input itself; a folder that cannot be written in
(found by creating and removing a probe file there, which is what the write will do).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.errors import InputError


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_output(path: str | Path, key: str, *, force: bool = False,
                 inputs: Iterable[str | Path] = ()) -> Path:
    """`path` as a place a new file can be renamed into, or an InputError naming `key`."""
    out = Path(path)
    if out.is_symlink():
        raise InputError(f"{out} is a symbolic link (to {os.readlink(out)}); give the path "
                         f"of the file itself", key=key)
    if out.exists():
        mode = out.stat().st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{out} is {_kind(mode)}; Stickler replaces only regular "
                             f"files, even with --force", key=key)
        for given in inputs:
            if Path(given).exists() and out.samefile(given):
                raise InputError(f"{out} is the input; the output would overwrite it",
                                 key=key)
        if not force:
            raise InputError(f"{out} exists; use --force to replace it", key=key)
    _check_writable_folder(out.parent if str(out.parent) else Path("."), key)
    return out


def _check_writable_folder(folder: Path, key: str) -> None:
    """The nearest existing folder of `folder` takes a new file (the writers make the
    missing ones), by trying: permissions alone do not tell (root, read-only mounts,
    /proc)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{existing} is not a directory; cannot write in it", key=key)
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".stickler-probe-")
    except OSError as exc:
        raise InputError(f"cannot write in {existing}: {exc.strerror}", key=key) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A report folder written complete or not at all: the block writes into a hidden
    folder beside `folder`, which is renamed into place when the block ends (or, if
    `folder` already holds files, whose files are moved in then); an exception, Ctrl-C or
    SIGTERM removes it, and `folder` is as it was."""
    import shutil

    folder = Path(folder)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{existing} is not a directory", key="--report-dir")
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.",
                                     suffix=".partial"))
    except OSError as exc:
        raise InputError(f"cannot write in {folder.parent}: {exc.strerror}",
                         key="--report-dir") from None
    try:
        yield work
        if folder.is_dir() and any(folder.iterdir()):
            for item in work.iterdir():
                os.replace(item, folder / item.name)
            work.rmdir()
        else:
            if folder.is_dir():
                folder.rmdir()
            os.replace(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
