"""The ``csv`` crm_sync adapter: assignment files from a local inbox, activity exports to a local outbox."""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from cartera.plugin import (
    SET_ASIDE_FILE,
    Activity,
    AdapterRegistry,
    AssignmentBatch,
    AssignmentReader,
    CheckResult,
    CrmSync,
    CrmSyncCapabilities,
    DeliveryScope,
    FileIdentity,
    FileOverMaxBytes,
    FileRejected,
    FirstTime,
    PluginConfig,
    PluginContext,
    RowError,
    SetAsideFile,
    SetAsideFiles,
    SetAsideKind,
    Settling,
    activities_writer,
    event,
    export_name,
    hookimpl,
    is_keepable_name,
    local_identity,
    read_identity,
    read_local,
    rejection_names,
    rejections_writer,
    shown_name,
    write_atomically,
)
from cartera.plugins.crm_sync.csv_dir.client import FolderIsASymlink, inbox_entries, move_into, open_entry, write_new
from cartera.plugins.crm_sync.csv_dir.config import CsvDirConfig


class CsvDirSync(CrmSync[CsvDirConfig]):
    """One creditor's CSV files in local directories; imported files move to the archive, rejected ones to the
    rejected folder (or, with ``keep_files``, both stay, remembered)."""

    name: ClassVar[str] = "csv"
    config_model: ClassVar[type[PluginConfig]] = CsvDirConfig
    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities(rejection_reports=True, restricts_deliveries=True)

    def __init__(self, config: CsvDirConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._reader = AssignmentReader(config, config.max_file_bytes)
        #: files imported or rejected but left in the inbox (keep_files, or a folder refused the move)
        self._set_aside = SetAsideFiles(context.data_dir / SET_ASIDE_FILE, context.log)
        self._set_aside.upgrade((context.data_dir / name for name in OLD_LEDGERS), _read_old_ledger, _current_identity)
        self._first_skip = FirstTime()  #: inbox entries that are not regular files are warned about once
        self._spelled = False  #: the files remembered under another path to the inbox were renamed (first listing)
        self._settling = Settling(config.settle_seconds, context.log, "crm_sync.csv.settling")

    def start(self) -> None:
        """Create a missing outbox, group-readable (0750) when the exports are for the service's group to read."""
        try:
            self.config.outbox.mkdir(parents=True)
        except FileExistsError:
            return
        if self.config.file_mode & 0o040:
            self.config.outbox.chmod(0o750)

    def stop(self) -> None:
        self._set_aside.close()

    def check(self) -> CheckResult:
        inbox, outbox = self.config.inbox, self.config.outbox
        problems = []
        if not (inbox.is_dir() and os.access(inbox, os.R_OK | os.X_OK)):
            problems.append(f"inbox {inbox} is not a readable directory")
        if not (outbox.is_dir() and os.access(outbox, os.W_OK | os.X_OK)):
            problems.append(f"outbox {outbox} is not a writable directory")
        if not (problems or self.config.keep_files):
            problems += [
                problem
                for folder in (self.config.archive_dir, self.config.rejected_dir)
                if (problem := _unmovable(inbox, folder)) is not None
            ]
        if problems:
            return CheckResult(False, "; ".join(problems))
        try:
            waiting = sum(1 for _ in self._waiting(retry=False))
        except OSError as exc:  # the inbox cannot be listed (an ACL, a share's I/O error)
            return CheckResult(False, f"inbox {inbox} cannot be listed: {exc.strerror or exc}")
        return CheckResult(True, f"inbox {inbox} readable, {waiting} file(s) waiting; outbox {outbox} writable")

    def delivers(self) -> DeliveryScope:
        """The configured creditor's configured portfolio: every row of its files is stamped with them."""
        return DeliveryScope.of(self.config.creditor, self.config.portfolio)

    def read_file(self, path: Path) -> AssignmentBatch:
        return read_local(self._reader, path)

    def fetch(self) -> Iterator[AssignmentBatch]:
        """The inbox's regular files, not read yet (the import reads each once); a symlink, FIFO, device or
        directory is skipped (one warning), never read; so is a file the node may not open (left in place), and one
        whose name is not valid UTF-8 (one warning naming it escaped: the creditor renames it), and one larger than
        ``max_file_bytes`` by its size (one warning, not a byte read: a sparse file's terabytes cost nothing); one
        growing past it while the import reads it is read no further (rejected, changed). With
        ``keep_files`` a file set aside in place is left out by its identity, unread; the same bytes under a new
        identity (copied in again) are fetched, and the import, reading them once, finds them imported before (or,
        after a later delivery, applies them again). A file whose size and mtime are those remembered and whose
        bytes hash to the sha256 remembered is the same file (a chmod, a restore keeping the time): its identity is
        updated, it is not fetched. So is, always, an imported (rejected) file its archive (rejected) folder refused
        (:meth:`acknowledge`): fetched again, it would be applied again after every later delivery; without
        ``keep_files`` its move is retried instead, and once moved it is forgotten. The files remembered so that
        the inbox has not listed for ``FORGET_AFTER`` (seven days) are forgotten: one empty listing (an unmounted
        share's empty mount point) forgets nothing, and an inbox that is not there forgets nothing at all. An inbox
        that cannot be listed (no read right, a share's I/O error) fails the fetch (the sync reports it), never
        lists empty. A file not settled (``settle_seconds``: modified that long ago by the node's clock, or
        listed with the same size and mtime that long) may still be being written: it is left, unread, for a later
        fetch (``crm_sync.csv.settling`` once), never an error."""
        return self._waiting(retry=True)

    def _waiting(self, *, retry: bool) -> Iterator[AssignmentBatch]:
        """:meth:`fetch`; ``retry``: move the files a folder refused and leave those not settled (not while
        ``check`` counts)."""
        config = self.config
        entries = list(inbox_entries(config.inbox, config.pattern, config.archive_dir, config.rejected_dir))
        if config.inbox.is_dir():
            prefix = os.path.join(str(config.inbox), "")
            if not self._spelled:  # the inbox configured by another path to the same folder: its kept files
                self._set_aside.take_over(prefix, _inbox_names(config.inbox))
                self._spelled = True
            self._set_aside.forget_unlisted({str(path) for path, _ in entries}, prefix=prefix)
        if retry:
            self._settling.forget_unlisted({str(path) for path, _ in entries})
            self._first_skip.forget_unlisted(self._warned_keys(entries))
        refused: set[Path] = set()  #: folders that refused a retried move in this pass: said once
        for path, regular in entries:
            if not is_keepable_name(str(path)):  # no store nor log line can hold it
                self._first_skip.warn(path, self.context.log, "crm_sync.csv.name_not_utf8", file=shown_name(str(path)))
                continue
            if not regular:
                self._first_skip.warn(path, self.context.log, "crm_sync.csv.not_a_regular_file", file=str(path))
                continue
            if retry and not self._settled(path):
                continue
            try:
                batch = self._read_inbox(path)
            except FileOverMaxBytes as exc:  # by its size, not a byte read: left in the inbox
                self._first_skip.warn(
                    path, self.context.log, "crm_sync.csv.file_too_large", file=str(path), why=str(exc)
                )
                continue
            except FileRejected as exc:  # this file only (not readable by the node): the others still load
                self._first_skip.warn(
                    path, self.context.log, "crm_sync.csv.file_unreadable", file=str(path), why=exc.reason
                )
                continue
            identity = read_identity(batch)
            if identity is None:
                yield batch
                continue
            kept = self._set_aside.get(batch.source, local_identity(identity), partial(_same_bytes, batch, identity))
            if kept is None:
                yield batch  # not kept (keep_files) nor left in the inbox by a refused folder, or changed since
            elif retry and not config.keep_files:
                self._move_again(batch, kept, refused)

    def _warned_keys(self, entries: list[tuple[Path, bool]]) -> set[Path]:
        """What the warnings said once may be about while the inbox lists ``entries``: their files, the folders
        leading to them, the archive and rejected folders and those leading to them (a refused folder, at whatever
        level it was refused, is said once, not once per sync)."""
        keys: set[Path] = set()
        for path in (self.config.archive_dir, self.config.rejected_dir):
            keys.add(path)
            keys.update(path.parents)
        for path, _ in entries:
            keys.add(path)
            keys.update(path.parents)
        return keys

    def _settled(self, path: Path) -> bool:
        """Whether the inbox file ``path`` is settled (:class:`Settling`): its age is by the node's system clock,
        as the file system stamps it (not the site's clock, which may be simulated)."""
        try:
            status = path.lstat()
        except OSError:  # gone: reading it says so
            return True
        age = time.time() - status.st_mtime
        return self._settling.settled(str(path), status.st_size, status.st_mtime_ns, age=age)

    def _move_again(self, batch: AssignmentBatch, kept: SetAsideFile, refused: set[Path]) -> None:
        """Move a file a folder refused once more (into the archive if imported, else the rejected folder), unless
        it changed since; forget it once moved. A folder refusing again is said once per pass."""
        imported = kept.kind == "imported"
        path = self._unchanged(batch, f"crm_sync.csv.changed_after_{'import' if imported else 'rejection'}")
        if path is None:
            return
        folder = self.config.archive_dir if imported else self.config.rejected_dir
        target = self._move(path, folder, quiet=folder in refused)
        if target is None:
            refused.add(folder)
            return
        self._set_aside.forget(batch.source)
        event(
            self.context.log,
            "crm_sync.csv.archived" if imported else "crm_sync.csv.set_aside",
            file=str(path),
            to=str(target),
        )

    def _remember(self, batch: AssignmentBatch, kind: SetAsideKind) -> None:
        """Remember the inbox file ``batch`` was read from as left there, by its identity (and content hash)."""
        identity = read_identity(batch)
        if identity is not None:
            self._set_aside.remember(batch.source, local_identity(identity), batch.content_sha256, kind)

    def _read_inbox(self, path: Path) -> AssignmentBatch:
        """An inbox file as a batch, opened (on every pass) only while it is a regular file with one name, never
        through a symlink swapped in after the listing (for the file or any sub-folder leading to it: another
        creditor's inbox), nor a hard link to a file elsewhere (the creditor's
        account could link a file of the node's it cannot read: a rejection report would quote its first line)."""
        source = str(path)

        def opener() -> BinaryIO:
            try:
                stream = open_entry(path, self.config.inbox)
            except OSError as exc:
                raise FileRejected(source, f"cannot read: {exc.strerror or exc}") from None
            if (names := os.fstat(stream.fileno()).st_nlink) > 1:
                stream.close()
                raise FileRejected(source, f"cannot read: a hard link ({names} names for one file), not read")
            return stream

        return self._reader.batch(source, opener)

    def acknowledge(self, batch: AssignmentBatch) -> None:
        """Archive the file, unless it is outside the inbox, already gone, or changed since it was read.

        With ``keep_files`` the file stays and its content hash and identity are remembered instead.
        """
        if self.config.keep_files:
            self._remember(batch, "imported")
            return
        path = self._unchanged(batch, "crm_sync.csv.changed_after_import")
        if path is not None and (target := self._move(path, self.config.archive_dir)) is not None:
            event(self.context.log, "crm_sync.csv.archived", file=str(path), to=str(target))
        elif path is not None:  # left in the inbox: remembered, so it is not fetched (and applied) again
            self._remember(batch, "imported")

    def reject(self, batch: AssignmentBatch) -> None:
        """Move the file into the rejected folder (a name already there is kept: the file gets a timestamp
        suffix), unless it is outside the inbox, already gone, or changed since it was read (a corrected file
        under the same name is fetched next time). With ``keep_files`` the file stays, its hash and identity
        remembered."""
        if self.config.keep_files:
            self._remember(batch, "rejected")
            return
        path = self._unchanged(batch, "crm_sync.csv.changed_after_rejection")
        if path is not None and (target := self._move(path, self.config.rejected_dir)) is not None:
            event(self.context.log, "crm_sync.csv.set_aside", file=str(path), to=str(target))
        elif path is not None:  # left in the inbox: remembered, so it is not read (and rejected) again each sync
            self._remember(batch, "rejected")

    def _move(self, path: Path, folder: Path, *, quiet: bool = False) -> Path | None:
        """``path`` moved into ``folder``; a folder the creditor made a symlink (into another creditor's inbox,
        say), ``folder`` or a sub-folder of the inbox holding ``path``, is never moved through: the file stays in
        the inbox (one warning; :meth:`acknowledge` remembers it). So does a file the folder refuses for any other
        reason (another filesystem, not writable, missing and not creatable): ``crm_sync.csv.archive_failed`` each
        time (unless ``quiet``), and :meth:`acknowledge` remembers it."""
        try:
            return move_into(path, folder, self.context.clock.now(), inbox=self.config.inbox)
        except FolderIsASymlink as exc:  # the folder, or one leading to the file (swapped after it was read)
            refused = Path(exc.filename) if exc.filename else folder
            self._first_skip.warn(
                refused, self.context.log, "crm_sync.csv.folder_refused", folder=str(refused), why=exc.strerror
            )
            return None
        except OSError as exc:
            if quiet:
                return None
            event(
                self.context.log,
                "crm_sync.csv.archive_failed",
                logging.ERROR,
                file=str(path),
                folder=str(folder),
                errno=exc.errno,
                why=exc.strerror or str(exc),
            )
            return None

    def _unchanged(self, batch: AssignmentBatch, changed_event: str) -> Path | None:
        """The inbox file ``batch`` was read from, if it is still there with the same content: the same file
        (not a symlink) with the identity it had when fetched (which every read of the batch checked), so the
        file is not read again."""
        path = Path(batch.source)
        if self.config.inbox.resolve() not in path.resolve().parents:
            return None
        try:
            status = path.lstat()
        except OSError:  # gone
            return None
        if not stat.S_ISREG(status.st_mode):
            return None
        if FileIdentity.of(status) != read_identity(batch):
            event(self.context.log, changed_event, logging.WARNING, file=str(path))
            return None
        return path

    def export(self, activities: Sequence[Activity]) -> None:
        if not activities:
            return
        write_atomically(
            self.config.outbox / export_name(activities),
            activities_writer(activities, self.config.export),
            self.config.file_mode,
        )

    def report_rejections(self, batch: AssignmentBatch, errors: Sequence[RowError]) -> None:
        """Write the rejection report of ``batch`` to the outbox, next to the exports; a report of the same name
        still there (of an earlier delivery under the same name) is kept: this one gets a timestamp suffix."""
        write_new(
            self.config.outbox,
            rejection_names(batch.source, self.context.clock.now()),
            rejections_writer(errors, self.config.export),
            self.config.file_mode,
        )


OLD_LEDGERS = {"acknowledged.sha256": "imported", "rejected.sha256": "rejected"}
"""The files set aside as an earlier version remembered them, taken over once (:meth:`SetAsideFiles.upgrade`)."""


def _read_old_ledger(path: Path) -> Iterator[tuple[str, SetAsideFile]]:
    """The entries of an earlier version's ledger: lines ``sha256  identity  source`` (a line without an identity,
    of a batch not read from a file, never matched one: left out)."""
    kind: SetAsideKind = "rejected" if OLD_LEDGERS[path.name] == "rejected" else "imported"
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            fields = line.rstrip("\n").split("  ", 2)
            if len(fields) == 3 and line.endswith("\n"):
                yield fields[2], SetAsideFile(fields[1], fields[0], kind)


def _inbox_names(inbox: Path) -> Callable[[str], str | None]:
    """A source's name under ``inbox`` when one of its folders is the inbox by another path, else None."""
    real = inbox.resolve()

    @cache
    def is_inbox(folder: Path) -> bool:
        try:
            return folder.resolve() == real
        except (OSError, RuntimeError):  # a folder gone, a symlink loop
            return False

    def renamed(source: str) -> str | None:
        path = Path(source)
        folder = next((folder for folder in path.parents if is_inbox(folder)), None)
        return None if folder is None else str(inbox / path.relative_to(folder))

    return renamed


def _same_bytes(batch: AssignmentBatch, identity: FileIdentity, kept: SetAsideFile) -> bool:
    """Whether the file ``batch`` reads, of ``identity``, is the one remembered as ``kept`` though its identity
    changed: the same size and mtime (a metadata change, or a copy keeping the time) and bytes hashing to the
    sha256 remembered. A changed mtime is a new delivery (the creditor sending it again), never read here."""
    fields = kept.identity.split(":")
    if len(fields) != 5 or fields[2:4] != [str(identity.size), str(identity.mtime_ns)]:
        return False
    try:
        return batch.content_sha256 == kept.sha256
    except FileRejected:  # changed while hashed: a new delivery
        return False


def _current_identity(source: str) -> str | None:
    try:
        return local_identity(FileIdentity.of(os.lstat(source)))
    except OSError:
        return None


def _unmovable(inbox: Path, folder: Path) -> str | None:
    """Why a file of ``inbox`` cannot be renamed into ``folder`` (or its nearest existing parent, when it is to be
    created), if it can be told without moving anything: not a writable directory, or on another filesystem."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        same_device = existing.stat().st_dev == inbox.stat().st_dev
    except OSError as exc:
        return f"folder {folder}: {exc.strerror or exc}"
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        return f"folder {folder} (imported/rejected files) is not a writable directory"
    if not same_device:
        return f"folder {folder} is not on the inbox's filesystem (imported/rejected files are moved there by a rename)"
    return None


@hookimpl
def cartera_register_crm_syncs(register: AdapterRegistry[CrmSync[Any]]) -> None:
    register.add(CsvDirSync)
