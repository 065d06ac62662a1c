"""One SFTP session to the creditor's server: host key checked against known_hosts, opened on demand.

Every failure becomes an :class:`SftpError` an operator can act on; passwords and passphrases never appear in
messages (paramiko's own messages do not carry them either).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import itertools
import posixpath
import socket
import stat
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_NAME,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STAT,
    CMD_STATUS,
    SFTP_EOF,
    int64,
)

from cartera.plugin import CarteraError, is_keepable_name, shown_name
from cartera.plugins.crm_sync.sftp_csv.config import SftpCsvConfig

READ_SIZE = 32768  #: bytes one READ asks for (what every server answers whole; paramiko's own)
READS_AHEAD = 16
"""READs of one file kept in flight: answers that arrive before their turn wait in memory, so one download holds
at most this many times :data:`READ_SIZE` (a whole-file read-ahead held every answer, of any length the server
chose, before the byte limit was checked: round 23 A-F3)."""
MAX_LISTED_ENTRIES = 100_000
"""Most entries a folder's listing takes: a server sending names without end would otherwise fill the node's
memory (the inbox is the one folder listed; past this its listing fails naming it)."""
MAX_NAME_BYTES = 1024
"""Longest listed name kept (a file system's own bound is 255 bytes): a longer one is kept cut to
:data:`SHOWN_NAME_BYTES` and never fetched, so a server listing names of megabytes (new ones every sync) fills
neither the node's memory nor its log (round 23 A-F2)."""
SHOWN_NAME_BYTES = 200  #: how much of a name longer than MAX_NAME_BYTES is kept (and shown), followed by ``…``


class SftpError(CarteraError):
    """The creditor's SFTP server cannot be reached, refused us, or an operation on it failed."""


class FileTooLarge(SftpError):
    """A remote file sent more than ``max_file_bytes``: not fetched."""


class FileUnreadable(SftpError):
    """One remote file could not be downloaded (refused by the server, not storable here); the session works."""


class DownloadTooSlow(FileUnreadable):
    """A download took longer than ``download_timeout_s``: cut by closing the session (reopened on next use)."""


class TooSlow(SftpError):
    """An operation on the server (a listing, a rename...) took longer than ``download_timeout_s``: cut."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    mtime: int
    regular: bool  #: a regular file itself, not a symlink, directory or special file (never downloaded)
    #: the listed name's length in bytes when longer than MAX_NAME_BYTES: ``path`` holds it cut (never fetched)
    name_cut_from: int = 0

    @property
    def keepable_name(self) -> bool:
        """Whether the name the server listed is valid UTF-8 (paramiko, and so every later operation on the file,
        needs it) and holds no NUL (no local copy can bear it): one that is not is skipped, named by :attr:`shown`."""
        return is_keepable_name(self.path)

    @property
    def shown(self) -> str:
        """The path as logs show it: bytes that are not UTF-8 escaped (``caf\\xe9.csv``)."""
        return shown_name(self.path)


class SftpSession:
    """The adapter's connection: opened at first use, reused, closed and reopened after any failure."""

    def __init__(self, config: SftpCsvConfig) -> None:
        self.config = config
        self.where = f"sftp://{config.username}@{config.host}:{config.port}"
        self._lock = threading.RLock()
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._stopped = False  #: :meth:`abort` was called: no operation opens a session again until :meth:`resume`

    def close(self) -> None:
        with self._lock:
            if self._ssh is not None:
                self._ssh.close()
            self._ssh = self._sftp = None

    def abort(self) -> None:
        """Close the connection now, without waiting for the operation under way (which then fails at once), and
        open none again until :meth:`resume`: the adapter's stop never waits for a server."""
        self._stopped = True
        ssh = self._ssh
        if ssh is not None:
            ssh.close()

    def resume(self) -> None:
        """Let operations open a session again after :meth:`abort` (the adapter started again)."""
        self._stopped = False

    @contextmanager
    def sftp(self, doing: str, too_slow: type[SftpError] = TooSlow) -> Iterator[paramiko.SFTPClient]:
        """The open session, for one operation described by ``doing`` (named in errors), bounded as a whole by
        ``download_timeout_s``: ``timeout_s`` bounds each answer only, so a server answering each request in time
        but never done (a listing one name at a time for ever, a file a byte at a time) would hold the sync, and
        the node's stop, for ever. Past the deadline the session is closed from a timer (a blocked request then
        fails at once) and ``too_slow`` is raised."""
        with self._lock:
            cut = threading.Event()
            try:
                if self._stopped:
                    raise SftpError(f"{self.where}: {shown_name(doing)} not started: the adapter is stopping")
                with self._deadline(cut):  # opening the session included: a server may never answer its INIT
                    client = self._current() or self._connect()
                    yield client
            except SftpError as exc:
                self.close()
                if cut.is_set() and not isinstance(exc, too_slow):
                    raise self._too_slow(doing, too_slow) from None
                raise
            except (OSError, paramiko.SSHException, EOFError, UnicodeError) as exc:
                self.close()
                if cut.is_set():
                    raise self._too_slow(doing, too_slow) from None
                raise SftpError(f"{self.where}: {shown_name(doing)} failed: {_describe(exc)}") from None

    def _too_slow(self, doing: str, error: type[SftpError]) -> SftpError:
        limit = self.config.download_timeout_s
        return error(
            f"{self.where}: {shown_name(doing)} cut after {limit:g} s (download_timeout_s): the server answers too "
            "slowly"
        )

    @contextmanager
    def _deadline(self, cut: threading.Event) -> Iterator[None]:
        """Close the session (the one open then, or being opened) past ``download_timeout_s`` (``cut`` set
        first), from a timer."""

        def expire() -> None:
            cut.set()
            if (ssh := self._ssh) is not None:
                ssh.close()

        timer = threading.Timer(self.config.download_timeout_s, expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _current(self) -> paramiko.SFTPClient | None:
        """The open session, unless the server closed it meanwhile (idle timeout, restart)."""
        transport = self._ssh.get_transport() if self._ssh is not None else None
        if transport is None or not transport.is_active():
            self.close()
            return None
        return self._sftp

    def _connect(self) -> paramiko.SFTPClient:
        """Log in and open the SFTP channel, every step bounded by ``timeout_s``; the client is kept from the start
        so that :meth:`abort` and the deadline can close a session still being opened (round 22 A-F1: a server
        that logged in and never answered the SFTP INIT held the sync, check and the node's stop for ever)."""
        ssh = paramiko.SSHClient()
        revoked = self._load_known_hosts(ssh.get_host_keys())
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        self._ssh = ssh
        try:
            self._log_in(ssh, revoked)
            sftp = _open_sftp(ssh, self.config.timeout_s)
        except BaseException:
            self._ssh = None
            ssh.close()
            raise
        self._sftp = sftp
        if self._stopped:  # stopped while connecting
            self.close()
            raise SftpError(f"{self.where}: the adapter is stopping")
        return sftp

    def _log_in(self, ssh: paramiko.SSHClient, revoked: frozenset[_KeyId]) -> None:
        config = self.config
        try:
            ssh.connect(
                config.host,
                port=config.port,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                key_filename=str(config.private_key) if config.private_key else None,
                passphrase=config.private_key_passphrase.get_secret_value() if config.private_key_passphrase else None,
                timeout=config.timeout_s,
                banner_timeout=config.timeout_s,
                auth_timeout=config.timeout_s,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            ssh.close()
            if refusal := self._revoked(exc.key, revoked):
                raise SftpError(refusal) from None
            raise SftpError(
                f"{self.where}: host key CHANGED: the server presented {exc.key.get_name()} "
                f"{exc.key.fingerprint}, {config.known_hosts} holds {exc.expected_key.fingerprint}; refusing to "
                "connect (confirm the new key with the creditor, then update known_hosts)"
            ) from None
        except paramiko.AuthenticationException:
            ssh.close()
            login = " and ".join(
                kind for kind, used in (("password", config.password), ("key", config.private_key)) if used
            )
            raise SftpError(f"{self.where}: authentication failed ({login} refused)") from None
        except paramiko.SSHException as exc:
            presented = _server_key(ssh)
            ssh.close()
            if "not found in known_hosts" in str(exc):
                if presented is not None and (refusal := self._revoked(presented, revoked)):
                    raise SftpError(refusal) from None
                raise SftpError(
                    f"{self.where}: host key UNKNOWN: [{config.host}]:{config.port} is not in "
                    f"{config.known_hosts}; refusing to connect (add the key checked with the creditor)"
                ) from None
            raise SftpError(f"{self.where}: SSH handshake failed: {_describe(exc)}") from None
        except (OSError, EOFError) as exc:
            ssh.close()
            raise SftpError(f"{self.where}: cannot connect: {_describe(exc)}") from None

    def _load_known_hosts(self, keys: paramiko.HostKeys) -> frozenset[_KeyId]:
        """Read ``known_hosts`` into ``keys``, leaving out the keys a ``@revoked`` line names (refused for every
        host, as OpenSSH refuses them); returns those. Any other marker (``@cert-authority``: host certificates
        are not checked here) and a line that is not a host key fail, naming the file and line."""
        path = self.config.known_hosts
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SftpError(f"{self.where}: cannot read known_hosts {path}: {_describe(exc)}") from None
        known: list[HostKeyEntry] = []
        revoked: set[_KeyId] = set()
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = ""
            if line.startswith("@"):
                marker, _, line = line.replace("\t", " ").partition(" ")
                line = line.strip()
                if marker != "@revoked":
                    raise SftpError(
                        f"{self.where}: known_hosts {path} line {number}: markers are not supported ({marker[:40]!r}: "
                        "host certificates are not checked); list the server's own key there, without a marker"
                    )
            try:
                entry = HostKeyEntry.from_line(line, number)
            except (paramiko.SSHException, InvalidHostKey, ValueError):
                raise SftpError(f"{self.where}: known_hosts {path} line {number}: not a valid host key line") from None
            if entry is None:  # a key type paramiko does not know: never matches, as before
                continue
            if marker:
                revoked.add(_key_id(entry.key))
            else:
                known.append(entry)
        for entry in known:
            if _key_id(entry.key) not in revoked:
                for name in entry.hostnames:
                    keys.add(name, entry.key.get_name(), entry.key)
        return frozenset(revoked)

    def _revoked(self, key: paramiko.PKey, revoked: frozenset[_KeyId]) -> str | None:
        """The refusal of a server that presented ``key``, when a ``@revoked`` line names it."""
        if _key_id(key) not in revoked:
            return None
        return (
            f"{self.where}: host key REVOKED: the server presented {key.get_name()} {key.fingerprint}, marked "
            f"@revoked in {self.config.known_hosts}; refusing to connect"
        )

    def waiting(self) -> list[RemoteFile]:
        """Entries of the inbox matching the pattern, by name, as listed (symlinks not followed); and those whose
        name is longer than :data:`MAX_NAME_BYTES`, cut (:attr:`RemoteFile.name_cut_from`), whatever the pattern
        (it cannot be matched against a name not kept)."""
        inbox = self.config.inbox
        with self.sftp(f"listing {inbox}") as sftp:
            entries = _listdir_attr(sftp, inbox, self.where)
        found = [
            _remote(posixpath.join(inbox, entry.filename), entry, cut_from)
            for entry, cut_from in entries
            if cut_from or fnmatch.fnmatchcase(entry.filename, self.config.pattern)
        ]
        return sorted(found, key=lambda remote: remote.path)

    def download(self, remote: RemoteFile, target: Path) -> str:
        """Copy ``remote`` to ``target`` through a short temporary name, returning the SHA-256 of its bytes.
        Fails unless the size the opened file had arrived, and (:class:`FileTooLarge`) as soon as more than
        ``max_file_bytes`` did: a file growing meanwhile, or a server that tells one size and sends more, never
        fills the node's disk. A failure of this one file (the server refuses to open or read it, the local copy
        cannot be written) that leaves the session working is a :class:`FileUnreadable`: the other files can
        still be fetched."""
        limit = self.config.max_file_bytes
        temp = target.with_name(f".{uuid.uuid4().hex}.part")
        try:
            with self.sftp(f"downloading {remote.path}", DownloadTooSlow) as sftp:
                try:
                    received, size, digest = self._copy(sftp, remote, temp, limit)
                except (OSError, paramiko.SSHException, EOFError) as exc:
                    if isinstance(exc, TimeoutError) or not self._working():
                        raise
                    raise FileUnreadable(f"{self.where}{remote.path}: cannot download: {_describe(exc)}") from None
            if received != size:
                raise FileUnreadable(f"{self.where}{remote.path}: {received} bytes arrived of {size}")
            try:
                temp.replace(target)
            except OSError as exc:
                raise FileUnreadable(f"{self.where}{remote.path}: cannot store {target}: {_describe(exc)}") from None
        finally:
            temp.unlink(missing_ok=True)
        return digest

    def _copy(self, sftp: paramiko.SFTPClient, remote: RemoteFile, temp: Path, limit: int) -> tuple[int, int, str]:
        """Bytes received, the size the opened file had, and the SHA-256 of the bytes."""
        digest = hashlib.sha256()
        with sftp.open(remote.path, "rb") as source:
            size = _fstat(sftp, source, remote.path, self.where).st_size or 0
            with temp.open("wb") as sink:
                received = 0
                for chunk in _Reads(sftp, source, self.where, remote.path).chunks(limit + 1):
                    received += len(chunk)
                    if received > limit:
                        raise FileTooLarge(f"{self.where}{remote.path}: more than {limit} bytes (max_file_bytes)")
                    digest.update(chunk)
                    sink.write(chunk)
        return received, size, digest.hexdigest()

    def sha256(self, remote: RemoteFile) -> str | None:
        """The SHA-256 of the bytes ``remote.path`` holds now, read up to one byte past ``remote.size`` (a longer
        file differs anyway); None when it is gone. SFTP's modification times have whole seconds only: a file
        rewritten in place within the second, at the same size, shows only in its bytes."""
        digest = hashlib.sha256()
        with self.sftp(f"reading {remote.path} again", DownloadTooSlow) as sftp:
            try:
                source = sftp.open(remote.path, "rb")
            except FileNotFoundError:
                return None
            with source:
                for chunk in _Reads(sftp, source, self.where, remote.path).chunks(remote.size + 1):
                    digest.update(chunk)
        return digest.hexdigest()

    def _working(self) -> bool:
        """Whether the session is still up (an error was about one file, not the connection)."""
        transport = self._ssh.get_transport() if self._ssh is not None else None
        return transport is not None and transport.is_active()

    def stat(self, path: str) -> RemoteFile | None:
        """What ``path`` is now (a symlink itself, not what it points to); None when it is gone."""
        with self.sftp(f"checking {path}") as sftp:
            try:
                attributes = _stat(sftp, path, self.where)
            except FileNotFoundError:
                return None
        return _remote(path, attributes)

    def move_into(self, remote: RemoteFile, directory: str, now: datetime) -> str:
        """Rename ``remote`` into ``directory`` (created if missing); a name already there is kept and the file
        gets a UTC timestamp suffix instead."""
        name = posixpath.basename(remote.path)
        stem, suffix = posixpath.splitext(name)
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        with self.sftp(f"moving {remote.path} into {directory}") as sftp:
            self._makedirs(sftp, directory)
            target = name
            for counter in itertools.count():
                if not _exists(sftp, posixpath.join(directory, target), self.where):
                    break
                target = f"{stem}-{stamp}{f'-{counter}' if counter else ''}{suffix}"
            sftp.posix_rename(remote.path, posixpath.join(directory, target))
        return posixpath.join(directory, target)

    def upload(self, name: str, write: Callable[[IO[bytes]], None]) -> str:
        """Put ``name`` in the outbox atomically: written under a hidden temporary name, checked, given the
        configured mode, renamed (replacing a file of that name)."""
        content = _written(write)
        target = posixpath.join(self.config.outbox, name)
        with self.sftp(f"uploading {target}") as sftp, self._staged(sftp, content) as temp:
            sftp.posix_rename(temp, target)
        return target

    def upload_new(self, names: Iterable[str], write: Callable[[IO[bytes]], None]) -> str:
        """Put a file in the outbox under the first of ``names`` not taken, never replacing one: staged as
        :meth:`upload` does, then renamed with SFTP's plain rename (which fails on a name taken meanwhile). A taken
        name holding the same bytes is this very file uploaded before (sent again after a crash): kept, its path
        returned."""
        content = _written(write)
        outbox = self.config.outbox
        with self.sftp(f"uploading into {outbox}") as sftp, self._staged(sftp, content) as temp:
            for name in names:
                target = posixpath.join(outbox, name)
                if _exists(sftp, target, self.where):
                    if _holds(sftp, target, content, self.where):
                        return target
                    continue
                try:
                    sftp.rename(temp, target)
                except OSError:
                    if not _exists(sftp, target, self.where):
                        raise
                    continue
                return target
        raise AssertionError("names ran out")  # pragma: no cover - the names are endless

    @contextmanager
    def _staged(self, sftp: paramiko.SFTPClient, content: bytes) -> Iterator[str]:
        """``content`` in the outbox under a short hidden temporary name with the configured mode; removed
        unless renamed."""
        temp = posixpath.join(self.config.outbox, f".{uuid.uuid4().hex}.part")
        try:
            sftp.putfo(io.BytesIO(content), temp, file_size=len(content), confirm=False)
            written = _stat(sftp, temp, self.where, follow=True).st_size  # putfo's own check parses it laxly
            if written != len(content):
                raise OSError(f"size mismatch in put!  {written} != {len(content)}")
            sftp.chmod(temp, self.config.file_mode)
            yield temp
        finally:
            _remove_quietly(sftp, temp)

    def _makedirs(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        parts = directory.strip("/").split("/")
        root = "/" if directory.startswith("/") else ""
        for depth in range(1, len(parts) + 1):
            path = root + "/".join(parts[:depth])
            try:
                _stat(sftp, path, self.where, follow=True)
            except FileNotFoundError:
                sftp.mkdir(path)


_KeyId = tuple[str, bytes]  #: a key's type and its bytes


def _key_id(key: paramiko.PKey) -> _KeyId:
    return key.get_name(), key.asbytes()


def _server_key(ssh: paramiko.SSHClient) -> paramiko.PKey | None:
    """The key the server presented, if the key exchange got that far."""
    transport = ssh.get_transport()
    try:
        return transport.get_remote_server_key() if transport is not None else None
    except paramiko.SSHException:
        return None


def _listdir_attr(sftp: paramiko.SFTPClient, path: str, where: str) -> list[tuple[paramiko.SFTPAttributes, int]]:
    """``sftp.listdir_attr(path)``, but a name that is not valid UTF-8 (a Windows-1252 ERP's ``Peñalosa.csv``)
    is decoded with ``surrogateescape`` rather than failing the whole listing (paramiko decodes names strictly),
    and a listing past :data:`MAX_LISTED_ENTRIES` fails naming the folder (``where``: the server). Each NAME
    answer is parsed strictly (:class:`_Answer`): paramiko pads reads past a message's end with zeros, so a
    13-byte answer claiming 0xFFFFFFFF entries listed empty names until memory ran out, and one entry claiming
    0xFFFFFFFF extended attributes held the CPU ~37 minutes, past the deadline and stop() (round 22 A-F7). Each
    entry comes with its name's length in bytes when longer than :data:`MAX_NAME_BYTES` (its ``filename`` then
    holds the first :data:`SHOWN_NAME_BYTES` and ``…``), else 0; the long name (``ls -l``'s line) is not kept."""
    client: Any = sftp  # its request methods are not typed (private: there is no public bytes listing)
    kind, message = client._request(CMD_OPENDIR, path)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    handle = message.get_binary()
    entries: list[tuple[paramiko.SFTPAttributes, int]] = []
    try:
        while True:
            try:
                kind, message = client._request(CMD_READDIR, handle)
            except EOFError:  # the end of the folder
                break
            if kind != CMD_NAME:
                raise paramiko.SFTPError("Expected name response")
            answer = _Answer(message, where, path)
            for _ in range(answer.count(_SMALLEST_ENTRY)):
                name = answer.string()
                answer.string()  # the long name: unused
                entry = answer.attributes()
                cut_from = len(name) if len(name) > MAX_NAME_BYTES else 0
                if cut_from:
                    name = name[:SHOWN_NAME_BYTES] + "…".encode()
                entry.filename = name.decode("utf-8", "surrogateescape")
                if name not in (b".", b".."):
                    entries.append((entry, cut_from))
                if len(entries) > MAX_LISTED_ENTRIES:
                    raise SftpError(
                        f"{where}: {shown_name(path)} lists more than {MAX_LISTED_ENTRIES} entries: not read (move "
                        "files out of it)"
                    )
    finally:
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            client._request(CMD_CLOSE, handle)
    return entries


def _stat(sftp: paramiko.SFTPClient, path: str, where: str, follow: bool = False) -> paramiko.SFTPAttributes:
    """``sftp.lstat(path)`` (``sftp.stat(path)`` when ``follow``), the answer parsed strictly (:class:`_Answer`)."""
    client: Any = sftp  # its request method is not typed
    kind, message = client._request(CMD_STAT if follow else CMD_LSTAT, path)
    return _attributes_answer(kind, message, where, path)


def _fstat(sftp: paramiko.SFTPClient, opened: paramiko.SFTPFile, path: str, where: str) -> paramiko.SFTPAttributes:
    """``opened.stat()``, the answer parsed strictly (:class:`_Answer`)."""
    client: Any = sftp
    kind, message = client._request(CMD_FSTAT, opened.handle)
    return _attributes_answer(kind, message, where, path)


def _attributes_answer(kind: int, message: Any, where: str, path: str) -> paramiko.SFTPAttributes:
    if kind != CMD_ATTRS:
        raise paramiko.SFTPError("Expected attributes")
    return _Answer(message, where, path).attributes()


_SMALLEST_ENTRY = 12  #: a listed entry's bytes at least: its name's and long name's lengths, its attributes' flags
_SMALLEST_PAIR = 8  #: an extended attribute's bytes at least: its name's and value's lengths


class _Answer:
    """The rest of a server's answer (a paramiko message), read strictly: a read past its end, or a count of items
    its bytes cannot hold, is an :class:`SftpError` naming ``path`` ("malformed answer"), never zeros."""

    def __init__(self, message: Any, where: str, path: str) -> None:
        self._data: bytes = message.asbytes()
        self._at: int = message.packet.tell()
        self._where, self._path = where, path

    def malformed(self, what: str) -> SftpError:
        return SftpError(f"{self._where}: {shown_name(self._path)}: malformed answer from the server ({what})")

    def _take(self, size: int) -> bytes:
        if size > len(self._data) - self._at:
            raise self.malformed("cut short")
        taken = self._data[self._at : self._at + size]
        self._at += size
        return taken

    def int32(self) -> int:
        value: int = struct.unpack(">I", self._take(4))[0]
        return value

    def int64(self) -> int:
        value: int = struct.unpack(">Q", self._take(8))[0]
        return value

    def string(self) -> bytes:
        return self._take(self.int32())

    def count(self, smallest: int) -> int:
        """A count of items of at least ``smallest`` bytes each, no more than the bytes left can hold."""
        count = self.int32()
        if count > (len(self._data) - self._at) // smallest:
            raise self.malformed(f"{count} items claimed")
        return count

    def attributes(self) -> paramiko.SFTPAttributes:
        """SFTP v3 file attributes (paramiko's ``SFTPAttributes._from_msg``, bounded)."""
        found = paramiko.SFTPAttributes()
        flags = self.int32()
        if flags & found.FLAG_SIZE:
            found.st_size = self.int64()
        if flags & found.FLAG_UIDGID:
            found.st_uid, found.st_gid = self.int32(), self.int32()
        if flags & found.FLAG_PERMISSIONS:
            found.st_mode = self.int32()
        if flags & found.FLAG_AMTIME:
            found.st_atime, found.st_mtime = self.int32(), self.int32()
        if flags & found.FLAG_EXTENDED:
            for _ in range(self.count(_SMALLEST_PAIR)):  # read past, unused
                self.string()
                self.string()
        found._flags = flags  # type: ignore[attr-defined]
        return found


def _remote(path: str, attributes: paramiko.SFTPAttributes, name_cut_from: int = 0) -> RemoteFile:
    regular = stat.S_ISREG(attributes.st_mode or 0)
    return RemoteFile(path, attributes.st_size or 0, attributes.st_mtime or 0, regular, name_cut_from)


class _Reads:
    """The bytes of a remote file opened for reading, from its start, with at most :data:`READS_AHEAD` READs of
    :data:`READ_SIZE` in flight. Every answer is taken here as it arrives (paramiko hands it over, in whatever
    order the server sends them) and checked then, before it is kept: one longer than its READ, or not an answer
    to a READ, fails the file (:class:`FileUnreadable`, malformed answer); a refusal is an :class:`OSError`, as
    paramiko's own reads raise. Answers to READs no longer wanted (past the end of the file) are dropped."""

    def __init__(self, sftp: paramiko.SFTPClient, opened: paramiko.SFTPFile, where: str, path: str) -> None:
        self._client: Any = sftp  # its request methods are not typed
        self._handle = opened.handle
        self._where, self._path = where, path
        self._asked: dict[int, int] = {}  #: READs in flight whose answer is wanted: request number -> bytes asked
        self._answers: dict[int, bytes] = {}  #: answers arrived before their turn (b"": the end of the file)
        self._failure: Exception | None = None

    def chunks(self, most: int) -> Iterator[bytes]:
        """The file's bytes in the pieces the server answers, until its end or ``most`` bytes."""
        in_flight: deque[tuple[int, int, int]] = deque()  #: READs asked, in the file's order: number, offset, bytes
        offset = 0  #: where the next READ starts
        try:
            while True:
                while len(in_flight) < READS_AHEAD and offset < most:
                    asked = min(READ_SIZE, most - offset)
                    in_flight.append((self._ask(offset, asked), offset, asked))
                    offset += asked
                if not in_flight:
                    return
                number, at, asked = in_flight.popleft()
                data = self._answer(number)
                if not data:  # the end of the file
                    return
                yield data
                if len(data) < asked:  # a short answer (a server's right): the rest is asked for, next in turn
                    at, asked = at + len(data), asked - len(data)
                    in_flight.appendleft((self._ask(at, asked), at, asked))
        finally:
            self._forget(in_flight)  # their answers, read by the next request (the CLOSE), are dropped

    def _ask(self, offset: int, length: int) -> int:
        """Send a READ of ``length`` bytes at ``offset``; its request number."""
        number: int = self._client._async_request(self, CMD_READ, self._handle, int64(offset), int(length))
        self._asked[number] = length
        return number

    def _forget(self, in_flight: deque[tuple[int, int, int]]) -> None:
        for number, _, _ in in_flight:
            self._asked.pop(number, None)
            self._answers.pop(number, None)
        in_flight.clear()

    def _answer(self, number: int) -> bytes:
        """The answer to READ ``number``, reading the server's answers (each handed to :meth:`_async_response`)
        until it came."""
        while True:
            if self._failure is not None:
                raise self._failure
            if number in self._answers:
                return self._answers.pop(number)
            self._client._read_response()

    def _async_response(self, kind: int, message: Any, number: int) -> None:
        """Paramiko's hand-over of the answer to request ``number``: kept if still wanted and well-formed. Never
        raises (paramiko may hand it over while another request waits): a failure is raised by :meth:`_answer`."""
        asked = self._asked.pop(number, None)
        if asked is None or self._failure is not None:
            return  # no longer wanted (past the end of the file, after a failure): dropped
        answer = _Answer(message, self._where, self._path)
        try:
            if kind == CMD_DATA:
                data = answer.string()
                if len(data) > asked:
                    raise answer.malformed(f"{len(data)} bytes for a read of {asked}")
                self._answers[number] = data
            elif kind == CMD_STATUS:
                code = answer.int32()
                if code == SFTP_EOF:
                    self._answers[number] = b""
                else:
                    text = answer.string().decode("utf-8", "replace")
                    self._failure = OSError(f"read refused (status {code}): {_cut(text)}")
            else:
                raise answer.malformed(f"a message of type {kind} to a read")
        except SftpError as exc:
            self._failure = FileUnreadable(str(exc))


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    """Remove ``path`` if it is there (a temporary name already renamed is not)."""
    with contextlib.suppress(OSError, paramiko.SSHException):
        sftp.remove(path)


def _written(write: Callable[[IO[bytes]], None]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _exists(sftp: paramiko.SFTPClient, path: str, where: str) -> bool:
    try:
        _stat(sftp, path, where)
    except FileNotFoundError:
        return False
    return True


def _holds(sftp: paramiko.SFTPClient, path: str, content: bytes, where: str) -> bool:
    """Whether ``path`` is a regular file holding exactly ``content``."""
    try:
        attributes = _stat(sftp, path, where)
        if not stat.S_ISREG(attributes.st_mode or 0) or attributes.st_size != len(content):
            return False
        with sftp.open(path, "rb") as existing:
            return existing.read(len(content) + 1) == content
    except OSError:
        return False


def _open_sftp(ssh: paramiko.SSHClient, timeout: float) -> paramiko.SFTPClient:
    """The SFTP channel of a logged-in client, each answer (the channel's opening, the server's VERSION to our
    INIT, every later one) awaited at most ``timeout`` seconds: ``open_sftp`` waits for them without end."""
    transport = ssh.get_transport()
    if transport is None or not transport.is_active():
        raise paramiko.SSHException("the connection closed after login")
    channel = transport.open_session(timeout=timeout)
    channel.settimeout(timeout)
    channel.invoke_subsystem("sftp")
    return paramiko.SFTPClient(channel)


def _describe(exc: BaseException, limit: int = 500) -> str:
    """The error's text, cut to ``limit`` characters: a server's error text (its SFTP status message) is the
    server's to write, and it is logged and stored."""
    if isinstance(exc, socket.timeout):
        return "timed out"
    return _cut(str(exc) or type(exc).__name__, limit)


def _cut(text: str, limit: int = 500) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
