"""The ``sftp_csv`` crm_sync adapter: assignment files from the creditor's SFTP inbox, exports to its outbox.

``fetch`` downloads each waiting file into the adapter's data directory (so parsing streams a local file and
the remote one is read once); ``acknowledge`` renames the remote file into the archive, ``reject`` (a file
rejected whole) into the rejected folder, unless it changed since it was downloaded. An imported (rejected) file
whose archive (rejected) rename fails is remembered (:class:`SetAsideFiles`, ``set-aside.sqlite3`` in the data
directory) and not fetched again while it is unchanged on the server: the rename is retried every sync instead,
its bytes read again before a retry only once per :data:`REHASH_SECONDS` (its size and mtime, listed anyway,
decide between). Exports and rejection reports are uploaded under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

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
    read_local,
    rejection_names,
    rejections_writer,
)
from cartera.plugins.crm_sync.sftp_csv.client import (
    DownloadTooSlow,
    FileTooLarge,
    FileUnreadable,
    RemoteFile,
    SftpError,
    SftpSession,
)
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig

REHASH_SECONDS = 3600
"""How long a stuck file's bytes, once found to be those imported (rejected), are trusted while its size and mtime
hold: its rename is retried each sync without reading it whole again (a rewrite at the same size that keeps the
whole-second mtime shows within this time)."""


@dataclass(frozen=True)
class _Fetched:
    remote: RemoteFile
    local: Path
    sha256: str  #: of the bytes downloaded (and imported)


class SftpCsvSync(CrmSync[SftpCsvConfig]):
    """One creditor's CSV files on its SFTP server."""

    name: ClassVar[str] = "sftp_csv"
    config_model: ClassVar[type[PluginConfig]] = SftpCsvConfig
    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities(rejection_reports=True, restricts_deliveries=True)

    def __init__(self, config: SftpCsvConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._reader = AssignmentReader(config, config.max_file_bytes)
        self._session = SftpSession(config)
        self._incoming = context.data_dir / "incoming"
        self._fetched: dict[str, _Fetched] = {}
        self._first_skip = FirstTime()  #: inbox entries that are not regular files are warned about once
        self._slow: set[str] = set()  #: files whose download was cut (download_timeout_s): tried after the others
        #: imported (rejected) files whose archive (rejected) rename failed, by source: path, size, mtime, sha256
        self._set_aside = SetAsideFiles(context.data_dir / SET_ASIDE_FILE, context.log)
        #: stuck files whose bytes were found to be those remembered, by source: with that identity, when
        self._checked: dict[str, tuple[str, datetime]] = {}
        self._set_aside.upgrade([context.data_dir / OLD_UNARCHIVED], _read_unarchived)
        #: files listed, by the node's monotonic clock: read once their size and mtime held settle_seconds
        self._settling = Settling(config.settle_seconds, context.log, "crm_sync.sftp.settling")

    def start(self) -> None:
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._session.resume()

    def stop(self) -> None:
        """Close the session at once, without waiting for an operation under way (a sync's listing, download...):
        it fails, and the sync job ends."""
        self._session.abort()
        self._set_aside.close()

    def check(self) -> CheckResult:
        try:
            waiting = [
                remote
                for remote in self._session.waiting()
                if remote.regular and remote.keepable_name and not remote.name_cut_from
            ]
        except SftpError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(
            True, f"{self._session.where}: logged in, inbox {self.config.inbox} lists {len(waiting)} file(s) waiting"
        )

    def delivers(self) -> DeliveryScope:
        """The configured creditor's configured portfolio: every row of its files is stamped with them."""
        return DeliveryScope.of(self.config.creditor, self.config.portfolio)

    def read_file(self, path: Path) -> AssignmentBatch:
        return read_local(self._reader, path)

    def fetch(self) -> Iterator[AssignmentBatch]:
        """The inbox's regular files; a symlink, directory or special file is skipped (one warning), and a file
        that is no longer the one listed once downloaded (swapped for a symlink...) is dropped until next time. A
        name longer than ``MAX_NAME_BYTES`` is skipped (one warning showing it cut, never kept whole nor opened); a
        name that is not valid UTF-8 (a Windows-1252 ERP's ``Peñalosa.csv``) is skipped too, with one warning
        naming it escaped (``Pe\\xf1alosa.csv``): the creditor renames it. A download cut by ``download_timeout_s``
        (a server sending too slowly) is skipped with one warning and ends this fetch, so that one sync, and the
        node's stop, wait at most that long for it; the next fetch takes the other files first and tries it last.
        An imported (rejected) file whose archive (rejected) rename failed is not fetched (nor applied, nor
        rejected) again while its size, mtime and bytes are those imported: its rename is retried instead (logged);
        changed, it is a new delivery. A file not settled (listed with the same size and mtime for
        ``settle_seconds`` of the node's monotonic clock: the server's clock is not the node's) may still be being
        uploaded: it is left, unread, for a later fetch (``crm_sync.sftp.settling`` once), never an error."""
        self._incoming.mkdir(parents=True, exist_ok=True)
        where = self._session.where
        waiting = self._session.waiting()
        self._forget_unlisted({f"{where}{remote.path}" for remote in waiting})
        for remote in sorted(waiting, key=lambda found: f"{where}{found.path}" in self._slow):
            source = f"{where}{remote.path}"
            if self._skipped(remote, source):
                continue
            if self._still_set_aside(source, remote) or not self._settling.settled(source, remote.size, remote.mtime):
                continue
            local = self._incoming / _local_name(remote.path)
            try:
                if remote.size > self.config.max_file_bytes:
                    raise FileTooLarge(f"{source}: {remote.size} bytes, more than {self.config.max_file_bytes}")
                digest = self._session.download(remote, local)
            except FileTooLarge as exc:
                self._first_skip.warn(
                    source, self.context.log, "crm_sync.sftp.file_too_large", file=source, why=str(exc)
                )
                continue
            except DownloadTooSlow as exc:  # this file only, tried again next time after the others
                self._slow.add(source)
                self._first_skip.warn(
                    source, self.context.log, "crm_sync.sftp.file_unreadable", file=source, why=str(exc)
                )
                return
            except FileUnreadable as exc:  # this file only (refused, not storable here): the others still load
                self._first_skip.warn(
                    source, self.context.log, "crm_sync.sftp.file_unreadable", file=source, why=str(exc)
                )
                continue
            if self._session.stat(remote.path) != remote:
                event(self.context.log, "crm_sync.sftp.changed_while_downloaded", logging.WARNING, file=source)
                local.unlink(missing_ok=True)
                continue
            try:
                batch = read_local(self._reader, local, source)
            except FileRejected as exc:  # the local copy cannot be opened: this file only
                local.unlink(missing_ok=True)
                self._first_skip.warn(
                    source, self.context.log, "crm_sync.sftp.file_unreadable", file=source, why=str(exc)
                )
                continue
            self._slow.discard(source)
            self._fetched[source] = _Fetched(remote, local, digest)
            event(self.context.log, "crm_sync.sftp.fetched", file=source, size=remote.size)
            yield batch

    def _skipped(self, remote: RemoteFile, source: str) -> bool:
        """Whether ``remote`` is skipped by its name or kind, with one warning: a name longer than
        ``MAX_NAME_BYTES`` (shown cut, with its length), one not valid UTF-8 (shown escaped), not a regular file."""
        shown = f"{self._session.where}{remote.shown}"
        fields: dict[str, object]
        if remote.name_cut_from:
            name, fields = "crm_sync.sftp.name_too_long", {"file": shown, "name_bytes": remote.name_cut_from}
        elif not remote.keepable_name:
            name, fields = "crm_sync.sftp.name_not_utf8", {"file": shown}
        elif not remote.regular:
            name, fields = "crm_sync.sftp.not_a_regular_file", {"file": source}
        else:
            return False
        self._first_skip.warn(source, self.context.log, name, **fields)
        return True

    def _forget_unlisted(self, listed: set[str]) -> None:
        """Forget the stuck (and the settling) files the inbox no longer lists (archived or removed by hand), and the
        warnings said (and the slow downloads noted) about names no longer listed: a server listing new names every
        sync grew them without end."""
        self._settling.forget_unlisted(listed)
        self._first_skip.forget_unlisted(listed)
        self._slow &= listed
        self._set_aside.forget_unlisted(listed, prefix=f"{self._session.where}{posixpath.join(self.config.inbox, '')}")
        self._checked = {source: checked for source, checked in self._checked.items() if source in listed}

    def acknowledge(self, batch: AssignmentBatch) -> None:
        """Archive the remote file, unless it is gone or changed since it was downloaded (its attributes or, read
        again, its bytes: a rewrite within the same second at the same size); drop the local copy."""
        self._move(batch, self.config.archive_dir, "archived", "changed_after_import")

    def reject(self, batch: AssignmentBatch) -> None:
        """Rename the remote file into the rejected folder (a name taken there gets a timestamp suffix), unless
        it is gone or changed since it was downloaded (a corrected file under the same name is fetched next
        time); drop the local copy."""
        self._move(batch, self.config.rejected_dir, "set_aside", "changed_after_rejection", kind="rejected")

    def _move(
        self, batch: AssignmentBatch, directory: str, moved: str, changed: str, *, kind: SetAsideKind = "imported"
    ) -> None:
        """The file is remembered (as ``kind``) before anything is asked of the server and forgotten once renamed
        (or found changed), so one whose rename fails, or whose connection drops before it
        (``crm_sync.sftp.archive_failed``, ``crm_sync.sftp.set_aside_failed``), is not fetched and applied (or
        rejected) again; the error is raised (the sync lists the delivery as failed)."""
        fetched = self._fetched.pop(batch.source, None)
        if fetched is None:
            return
        try:
            self._set_aside.remember(batch.source, _identity(fetched.remote), fetched.sha256, kind)
            try:
                current = self._session.stat(fetched.remote.path)
                same = current == fetched.remote and self._session.sha256(fetched.remote) == fetched.sha256
                target = self._session.move_into(fetched.remote, directory, self.context.clock.now()) if same else ""
            except SftpError as exc:
                event(self.context.log, _failed(kind), logging.ERROR, file=batch.source, why=str(exc))
                raise
            self._set_aside.forget(batch.source)
            if same:
                event(self.context.log, f"crm_sync.sftp.{moved}", file=batch.source, to=target)
            else:
                event(self.context.log, f"crm_sync.sftp.{changed}", logging.WARNING, file=batch.source)
        finally:
            fetched.local.unlink(missing_ok=True)

    def _still_set_aside(self, source: str, remote: RemoteFile) -> bool:
        """Whether ``remote`` is a file imported (rejected) whose archive (rejected) rename failed, unchanged since
        (size and mtime; its bytes read again only if not found the same within :data:`REHASH_SECONDS`): its
        rename is retried (``crm_sync.sftp.archived`` / ``set_aside``, or ``archive_failed`` / ``set_aside_failed``)
        and it is not fetched. Changed, it is forgotten: a new delivery."""
        identity = _identity(remote)
        stuck = self._set_aside.get(source, identity)
        if stuck is None:  # not remembered, or forgotten now: changed in size, mtime or name
            self._checked.pop(source, None)
            return False
        imported = stuck.kind == "imported"
        now = self.context.clock.now()
        try:
            checked = self._checked.get(source)
            if checked is None or checked[0] != identity or now - checked[1] > timedelta(seconds=REHASH_SECONDS):
                if self._session.sha256(remote) != stuck.sha256:
                    self._set_aside.forget(source)
                    self._checked.pop(source, None)
                    return False
                self._checked[source] = (identity, now)
            directory = self.config.archive_dir if imported else self.config.rejected_dir
            target = self._session.move_into(remote, directory, now)
        except SftpError as exc:
            event(self.context.log, _failed(stuck.kind), logging.ERROR, file=source, why=str(exc))
            return True
        self._set_aside.forget(source)
        self._checked.pop(source, None)
        event(
            self.context.log,
            "crm_sync.sftp.archived" if imported else "crm_sync.sftp.set_aside",
            file=source,
            to=target,
        )
        return True

    def export(self, activities: Sequence[Activity]) -> None:
        if not activities:
            return
        target = self._session.upload(export_name(activities), activities_writer(activities, self.config.export))
        event(self.context.log, "crm_sync.sftp.uploaded", file=target, count=len(activities))

    def report_rejections(self, batch: AssignmentBatch, errors: Sequence[RowError]) -> None:
        """Upload the rejection report of ``batch``; a report of the same name still in the outbox (of an earlier
        delivery under the same name) is kept: this one gets a timestamp suffix."""
        target = self._session.upload_new(
            rejection_names(batch.source, self.context.clock.now()), rejections_writer(errors, self.config.export)
        )
        event(self.context.log, "crm_sync.sftp.rejections_uploaded", file=target, count=len(errors))


OLD_UNARCHIVED = "unarchived.json"
"""Where an earlier version remembered the imported files left on the server, taken over once."""


def _failed(kind: SetAsideKind) -> str:
    """The event of a failed rename of a file imported (into the archive) or rejected (into the rejected folder)."""
    return "crm_sync.sftp.archive_failed" if kind == "imported" else "crm_sync.sftp.set_aside_failed"


def _identity(remote: RemoteFile) -> str:
    """A remote file's identity as remembered: ``size:mtime:path``."""
    return f"{remote.size}:{remote.mtime}:{remote.path}"


def _read_unarchived(path: Path) -> Iterator[tuple[str, SetAsideFile]]:
    """The entries of an earlier version's ``unarchived.json``: a JSON list of {source, path, size, mtime,
    sha256}."""
    for entry in json.loads(path.read_text(encoding="utf-8")):
        remote = RemoteFile(str(entry["path"]), int(entry["size"]), int(entry["mtime"]), True)
        yield str(entry["source"]), SetAsideFile(_identity(remote), str(entry["sha256"]), "imported")


def _local_name(remote_path: str) -> str:
    """The local copy's name: the remote name when short, else a hash of it (a remote name may be as long as
    the local file system allows, or longer in UTF-8 than a Windows server's 255 characters)."""
    name = posixpath.basename(remote_path)
    if len(name.encode("utf-8", "surrogateescape")) <= 100 and not name.startswith("."):
        return name
    return hashlib.sha256(remote_path.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".csv"


@hookimpl
def cartera_register_crm_syncs(register: AdapterRegistry[CrmSync[Any]]) -> None:
    register.add(SftpCsvSync)
