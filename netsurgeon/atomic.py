"""Atomic output: files are written under temporary names and renamed only when all succeeded.

* Temporaries are named ``.FINAL.netsurgeon-PID-RANDOM.tmp`` beside their final file and created with the
  normal mode (``0o666`` minus the umask), so the renamed file has the mode any other file would have.
* A later writer of the same final file, when it is about to write it (every check passed), removes the
  temporaries of that file which a killed run left: only names of exactly this form (the ``netsurgeon``
  tag, a PID that is no longer alive, eight hex digits), only regular files. Any other file, a user's
  ``.notes.20241201.tmp`` included, is never touched; a refused run removes nothing.
* ``replace=False`` renames without clobbering (a hard link, then unlink): when another run created
  the final file in the meantime, this one fails and removes what it staged.
* A full disk (``ENOSPC``/``EDQUOT``) becomes one :class:`~netsurgeon.errors.DiskFullError` line that
  says where and about how much was needed.
* :func:`one_run` keeps an output directory holding one run: a new run's files replace the previous run's only
  when it completes; a run that fails leaves the previous one exactly as it was.
* :func:`claim_output_dir` makes a run own its output directory for its whole duration (an exclusive
  ``flock`` on the directory where the system has one, released by the kernel even on ``kill -9``), and checks
  up front that the directory can be created and written, before any work is done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from netsurgeon.errors import DiskFullError, ExportError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no lock, as on file systems without flock
    fcntl = None  # type: ignore[assignment]

__all__ = ["check_not_inputs", "check_writable", "claim_output_dir", "clean_stale_temporaries", "expand_out",
           "input_files", "is_disk_full", "one_run", "staged_files"]

_TAG = "netsurgeon"
_TEMP = re.compile(rf"^\.(?P<final>.+)\.{_TAG}-(?P<pid>[1-9][0-9]{{0,9}})-[0-9a-f]{{8}}\.tmp$")
_BACKUP = re.compile(rf"^\.previous\.{_TAG}-(?P<pid>[1-9][0-9]{{0,9}})-[0-9a-f]{{8}}$")
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: what writers that are not Python file objects say on a full disk (safetensors' Rust io error, torch.save's
#: PytorchStreamWriter), since neither raises an OSError with an errno
_DISK_FULL_TEXT = ("no space left on device", "os error 28", "code: 28", "disk quota exceeded", "storagefull",
                   "file write failed")
_ACTIVE_RUNS: set[str] = set()


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full: an ``OSError`` with ENOSPC/EDQUOT, or the ``SafetensorError`` or
    ``RuntimeError`` that safetensors and ``torch.save`` raise for it."""
    if isinstance(err, OSError) and err.errno is not None:
        return err.errno in _DISK_FULL
    text = str(err).lower()
    return any(words in text for words in _DISK_FULL_TEXT)


def expand_out(value: str | Path, flag: str = "--out") -> Path:
    """A user's output (or input) path with ``~`` expanded; an empty one is refused (it would mean the
    current directory without saying so)."""
    text = os.fspath(value)
    if not text.strip():
        raise ExportError(f"{flag} is empty; give a directory (use {flag} . for the current one).")
    return Path(os.path.expanduser(text))


def input_files(inputs: list[str | Path]) -> set[str]:
    """The resolved paths of a run's inputs; an artifact's ``model.safetensors`` brings its sibling
    ``model.onnx`` (the pair is one input: replacing half of it would break the artifact)."""
    out: set[str] = set()
    for p in inputs:
        path = Path(p).resolve()
        out.add(str(path))
        if path.name == "model.safetensors":
            out.add(str(path.with_suffix(".onnx")))
    return out


def check_not_inputs(outputs: list[Path], inputs: list[str | Path], overwrite: bool) -> None:
    """Refuse to write over an input file (``overwrite`` or not), or over an existing output unless
    ``overwrite``."""
    resolved_inputs = input_files(inputs)
    for out in outputs:
        if str(out.resolve()) in resolved_inputs:
            raise ExportError(f"{out} is an input of this run and is never overwritten (--overwrite or not); "
                              "choose another output directory (--out).")
        if out.exists() and not overwrite:
            raise ExportError(f"{out} already exists; pass --overwrite (overwrite=True) or choose another --out.")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(directory: Path, final_name: str) -> list[Path]:
    """Remove the temporaries of ``final_name`` that writers no longer running left in ``directory`` (names
    of exactly the form this module makes, regular files only); returns what was removed."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMP.match(entry.name)
        if match is None or match["final"] != final_name or _alive(int(match["pid"])):
            continue
        try:
            if not stat.S_ISREG(entry.lstat().st_mode):
                continue
        except OSError:
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


def _new_temp(final: Path) -> Path:
    for _ in range(100):
        temp = final.parent / f".{final.name}.{_TAG}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies, as for any file
        except FileExistsError:
            continue
        os.close(fd)
        return temp
    raise ExportError(f"could not create a temporary file in {final.parent}.")  # pragma: no cover


def _normal_mode() -> int:
    """0o666 minus the umask: the mode any newly created file gets."""
    try:
        with open("/proc/self/status") as fh:  # read without changing it (os.umask is process-wide)
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def disk_full_error(where: Path, size_hint: int | None = None) -> DiskFullError:
    free = _free_bytes(where if where.is_dir() else where.parent)
    need = f"about {_mb(size_hint)} needed" if size_hint else "size unknown"
    have = f", {_mb(free)} free" if free is not None else ""
    return DiskFullError(f"disk full while writing {where} ({need}{have}); nothing was written: free some space "
                         "or choose another --out.")


def _link_no_clobber(temp: Path, final: Path) -> None:
    try:
        os.link(temp, final)
    except FileExistsError:
        raise ExportError(f"{final} appeared while this run was writing it (another run?); nothing of this run "
                          "was kept: choose another --out, or pass --overwrite.") from None
    except OSError as err:  # no hard links on this file system: check, then rename
        if err.errno in _DISK_FULL:
            raise
        if final.exists():
            raise ExportError(f"{final} appeared while this run was writing it (another run?); choose another "
                              "--out, or pass --overwrite.") from None
        os.replace(temp, final)
        return
    temp.unlink()


@contextlib.contextmanager
def staged_files(finals: list[Path], *, replace: bool = True, size_hint: int | None = None) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``finals``; on success rename them all, on any failure delete them.

    ``replace=False`` fails (and keeps nothing) when a final file exists by the time of the rename.
    ``size_hint`` (bytes) is only used to say how much was needed when the disk is full.
    """
    temps: list[Path] = []
    placed: list[Path] = []
    finals = [Path(f) for f in finals]
    try:
        try:
            for final in finals:
                final.parent.mkdir(parents=True, exist_ok=True)
                clean_stale_temporaries(final.parent, final.name)
                temps.append(_new_temp(final))
            yield temps
            mode = _normal_mode()
            for temp, final in zip(temps, finals, strict=True):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(temp, mode)  # some writers (safetensors) recreate the file with mode 0600
                if replace:
                    os.replace(temp, final)
                else:
                    _link_no_clobber(temp, final)
                placed.append(final)
        except Exception as err:  # OSError, or a writer's own error (SafetensorError, torch.save's RuntimeError)
            if not isinstance(err, ExportError) and is_disk_full(err):
                where = Path(err.filename) if getattr(err, "filename", None) else finals[0]
                if where.name.endswith(".tmp"):
                    where = next((f for t, f in zip(temps, finals, strict=False) if t == where), where)
                raise disk_full_error(where, size_hint) from None
            raise
    except BaseException:
        if not replace:  # roll back the files this run placed before a later one failed
            for final in placed:
                with contextlib.suppress(FileNotFoundError):
                    final.unlink()
        raise
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_stale_backups(out: Path) -> None:
    for entry in out.iterdir() if out.is_dir() else ():
        match = _BACKUP.match(entry.name)
        if match is not None and not _alive(int(match["pid"])) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def one_run(out: str | Path, names: Sequence[str], *,
            keep: Callable[[BaseException], bool] | None = None) -> Iterator[None]:
    """Make ``out`` hold one run: the previous run's files among ``names`` are moved into a hidden backup folder
    (``.previous.netsurgeon-PID-XXXXXXXX``) while the block writes, and deleted when it completes. When the
    block fails, what it wrote under ``names`` is removed and the previous files are moved back: ``out`` is
    exactly as it was (a directory the block created is removed again when left empty). ``keep(err)``: a
    failure that commits the new run all the same (a resumable interruption). Call it after every check passed.

    Nested blocks for the same directory are one (the outermost decides); backups a killed run left are
    removed by the next run in ``out``."""
    out = Path(out)
    key = str(out.resolve())
    if key in _ACTIVE_RUNS:
        yield
        return
    _ACTIVE_RUNS.add(key)
    existed = out.exists()
    backup: Path | None = None
    moved: list[str] = []

    def restore() -> None:
        for name in names:
            _remove(out / name)
        for name in moved:
            os.rename(backup / name, out / name)  # type: ignore[operator]
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.rmdir()
        if not existed:
            with contextlib.suppress(OSError):
                out.rmdir()

    try:
        _clean_stale_backups(out)
        present = [name for name in names if os.path.lexists(out / name)]
        try:
            if present:
                backup = out / f".previous.{_TAG}-{os.getpid()}-{secrets.token_hex(4)}"
                backup.mkdir()
                for name in present:
                    os.rename(out / name, backup / name)
                    moved.append(name)
            yield
        except BaseException as err:
            if keep is not None and keep(err):
                if backup is not None:
                    shutil.rmtree(backup, ignore_errors=True)
            else:
                restore()
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        _ACTIVE_RUNS.discard(key)


def check_writable(out: Path, flag: str = "--out") -> None:
    """Refuse an output directory that cannot be created or written, before any work is done.

    Creates nothing that is left behind: the probe file is removed, and so are directories made here.
    """
    with claim_output_dir(out, flag=flag, lock=False):
        pass


@contextlib.contextmanager
def claim_output_dir(out: str | Path, *, flag: str = "--out", lock: bool = True) -> Iterator[Path]:
    """Own ``out`` for the duration of the block: create it (and its parents) when missing, check it can be
    written, and hold an exclusive lock on it so that a second run writing there fails at once.

    Directories created here are removed again when the block leaves them empty (a refused run leaves
    nothing behind). Nothing already in ``out`` is touched here (temporaries of killed runs are removed by
    :func:`staged_files`, when a run that passed its checks writes the same file).
    """
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # mkdir would say "File exists"
            where = "is" if existing == out else f"is under {existing}, which is"
            raise ExportError(f"{flag} {out} {where} a symbolic link to {os.readlink(existing)}, which does not "
                              "exist; create the link's target or choose another directory.")
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"is under {existing}, which is a file"
        raise ExportError(f"{flag} {out} {where}; choose a directory.")
    created: list[Path] = []
    try:
        missing = []
        p = out
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        probe = _new_temp(out / "write-probe")
        probe.unlink()
    except OSError as err:
        _remove_empty(created)
        if err.errno in _DISK_FULL:
            raise disk_full_error(out) from None
        reason = err.strerror or type(err).__name__
        raise ExportError(f"{flag} {out} is not writable ({reason}); choose a directory you can write to.") from None
    fd = None
    try:
        if lock:
            fd = _lock(out, flag)
        yield out
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
        _remove_empty(created)


def _lock(out: Path, flag: str) -> int | None:
    if fcntl is None:
        return None
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ExportError(f"{flag} {out} is being written by another netsurgeon run; wait for it to finish or "
                          "choose another directory.") from None
    except OSError:  # file systems without flock: the no-clobber rename still protects the outputs
        os.close(fd)
        return None
    return fd


def _remove_empty(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            break
