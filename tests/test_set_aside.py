"""The memory of files left in a creditor's inbox (imported or rejected, not moved), shared by csv and sftp_csv."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cartera.portfolio.files.set_aside import FORGET_AFTER, SetAsideFile, SetAsideFiles


def store(tmp_path: Path, limit: int = 100) -> SetAsideFiles:
    return SetAsideFiles(tmp_path / "set-aside.sqlite3", logging.getLogger("test.set_aside"), limit=limit)


def test_a_file_is_remembered_while_its_identity_holds_and_forgotten_once_it_changed(tmp_path: Path) -> None:
    files = store(tmp_path)
    files.remember("/inbox/a.csv", "1:2:3", "a" * 64, "imported")
    files.remember("/inbox/b.csv", "4:5:6", "b" * 64, "rejected")
    assert files.get("/inbox/a.csv", "1:2:3") == SetAsideFile("1:2:3", "a" * 64, "imported")
    assert store(tmp_path).get("/inbox/b.csv", "4:5:6") == SetAsideFile("4:5:6", "b" * 64, "rejected")  # restarted
    assert files.get("/inbox/a.csv", "1:2:4") is None  # changed: a new delivery, forgotten
    assert files.get("/inbox/a.csv", "1:2:3") is None
    assert files.get("/inbox/c.csv", "1:2:3") is None
    files.forget("/inbox/b.csv")
    assert store(tmp_path).sources() == {}


class Clock:
    """The node's system clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_inbox_forgets_only_its_own_files_it_no_longer_lists(tmp_path: Path) -> None:
    clock = Clock()
    files = SetAsideFiles(tmp_path / "set-aside.sqlite3", logging.getLogger(), clock=clock)
    for source in ("sftp://u@h:22/inbox/a.csv", "sftp://u@h:22/inbox/b.csv", "sftp://u@h:2222/inbox/a.csv"):
        files.remember(source, "1", "0" * 64, "imported")
    clock.now += FORGET_AFTER
    files.forget_unlisted({"sftp://u@h:22/inbox/b.csv"}, prefix="sftp://u@h:22/inbox/")
    assert sorted(files.sources()) == ["sftp://u@h:22/inbox/b.csv", "sftp://u@h:2222/inbox/a.csv"]


def test_one_empty_listing_forgets_nothing_a_file_gone_longer_than_forget_after_is_forgotten(tmp_path: Path) -> None:
    """Round 22 A-F8: one empty listing (an unmounted share's empty mount point, a server listing its inbox empty
    once) forgot every file, and the files back were fetched and applied again over later deliveries. A file is
    forgotten once its inbox has not listed it for FORGET_AFTER; one listed is seen again (once a day at most)."""
    clock = Clock()
    files = SetAsideFiles(tmp_path / "set-aside.sqlite3", logging.getLogger(), clock=clock)
    files.remember("/inbox/a.csv", "1", "a" * 64, "imported")
    files.remember("/inbox/b.csv", "2", "b" * 64, "imported")
    clock.now += 60
    files.forget_unlisted(set(), prefix="/inbox/")  # the share unmounted for one sync
    assert sorted(files.sources()) == ["/inbox/a.csv", "/inbox/b.csv"]
    assert files.get("/inbox/a.csv", "1") == SetAsideFile("1", "a" * 64, "imported")  # back: not fetched again
    for _ in range(10):  # a.csv listed every day, b.csv gone
        clock.now += FORGET_AFTER / 5
        files.forget_unlisted({"/inbox/a.csv"}, prefix="/inbox/")
    assert list(store(tmp_path).sources()) == ["/inbox/a.csv"]
    clock.now += FORGET_AFTER - 1  # not listed for a while, not yet for FORGET_AFTER
    files.forget_unlisted(set(), prefix="/inbox/")
    assert list(files.sources()) == ["/inbox/a.csv"]
    clock.now += 1
    files.forget_unlisted(set(), prefix="/inbox/")
    assert files.sources() == {}


def test_a_map_of_an_earlier_version_gets_last_seen_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "set-aside.sqlite3"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE files (source TEXT PRIMARY KEY, identity TEXT NOT NULL, sha256 TEXT NOT NULL,"
        " kind TEXT NOT NULL CHECK (kind IN ('imported', 'rejected')))"
    )
    old.execute("INSERT INTO files VALUES ('/inbox/a.csv', '1', ?, 'imported')", ("a" * 64,))
    old.commit()
    old.close()
    clock = Clock()
    files = SetAsideFiles(path, logging.getLogger(), clock=clock)
    assert files.sources() == {"/inbox/a.csv": SetAsideFile("1", "a" * 64, "imported")}
    clock.now += FORGET_AFTER - 1
    files.forget_unlisted(set(), prefix="/inbox/")  # seen at the upgrade: not forgotten yet
    assert list(SetAsideFiles(path, logging.getLogger(), clock=clock).sources()) == ["/inbox/a.csv"]
    clock.now += 1
    files.forget_unlisted(set(), prefix="/inbox/")
    assert files.sources() == {}


def test_two_processes_sharing_the_file_keep_each_others_changes(tmp_path: Path) -> None:
    """A node and a CLI process (``check`` fetches) each hold the map: a change is made on the file read again."""
    node, cli = store(tmp_path), store(tmp_path)
    assert node.sources() == cli.sources() == {}
    node.remember("/inbox/a.csv", "1", "a" * 64, "imported")
    cli.remember("/inbox/b.csv", "2", "b" * 64, "imported")
    node.forget_unlisted({"/inbox/a.csv", "/inbox/b.csv"}, prefix="/inbox/")
    assert sorted(cli.sources()) == sorted(node.sources()) == ["/inbox/a.csv", "/inbox/b.csv"]


def test_the_safety_cap_forgets_the_oldest_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = store(tmp_path, limit=2)
    for name in ("a", "b", "c"):
        files.remember(f"/inbox/{name}.csv", name, "0" * 64, "imported")
    assert sorted(store(tmp_path, limit=2).sources()) == ["/inbox/b.csv", "/inbox/c.csv"]
    (record,) = [r for r in caplog.records if r.getMessage() == "crm_sync.set_aside.limit_reached"]
    assert record.levelno == logging.ERROR


def test_a_broken_file_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "set-aside.sqlite3").write_text("{not json")
    assert store(tmp_path).sources() == {}
    assert "crm_sync.set_aside.unreadable" in [r.getMessage() for r in caplog.records]


def test_an_upgrade_takes_the_old_files_once_preferring_the_current_identity(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps([["/inbox/a.csv", "now"], ["/inbox/a.csv", "stale"], ["/inbox/b.csv", "x"]]))

    def read(path: Path) -> list[tuple[str, SetAsideFile]]:
        return [
            (source, SetAsideFile(identity, "0" * 64, "imported")) for source, identity in json.loads(path.read_text())
        ]

    files = store(tmp_path)
    files.remember("/inbox/b.csv", "newer", "1" * 64, "rejected")  # an upgrade cut short, run again
    files.upgrade([old, tmp_path / "missing.json"], read, {"/inbox/a.csv": "now"}.get)
    assert not old.exists()
    assert {source: kept.identity for source, kept in store(tmp_path).sources().items()} == {
        "/inbox/b.csv": "newer",
        "/inbox/a.csv": "now",
    }


def _written() -> int:
    """Bytes this process has handed to write() so far (Linux: /proc/self/io ``wchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_a_change_to_a_large_memory_writes_a_few_pages_not_the_whole_map(tmp_path: Path) -> None:
    """Round 21 A-F4: a creditor leaving 12,000 files in its inbox made each remember() rewrite the whole map
    (N²/2 bytes over the N files, gigabytes). One change now writes about one row's pages; a lookup reads one."""
    files = store(tmp_path, limit=100_000)
    for number in range(3000):
        files.remember(f"/inbox/{'x' * 60}-{number:06d}.csv", f"1:{number}:12:3:4", "a" * 64, "imported")
    before = _written()
    files.remember("/inbox/one-more.csv", "1:9:12:3:4", "b" * 64, "rejected")
    files.forget("/inbox/one-more.csv")
    assert _written() - before < 64 * 1024  # the whole map is ~500 KB
    assert files.get(f"/inbox/{'x' * 60}-002999.csv", "1:2999:12:3:4") is not None


def _filled(tmp_path: Path) -> SetAsideFiles:
    files = store(tmp_path)
    for number in range(5):
        files.remember(f"/inbox/{number}.csv", f"1:{number}", "a" * 64, "imported")
    files.close()
    return files


def _failing_open(code: int) -> sqlite3.OperationalError:
    failure = sqlite3.OperationalError(f"sqlite error {code}")
    failure.sqlite_errorcode = code  # as sqlite3 sets it on its own errors
    return failure


@pytest.mark.abuse
@pytest.mark.parametrize(
    "code",
    [
        sqlite3.SQLITE_CANTOPEN,  # out of file descriptors
        sqlite3.SQLITE_FULL,  # disk full
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_IOERR_SHORT_READ,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
    ],
)
def test_a_passing_failure_to_open_fails_the_operation_and_keeps_every_file_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    """Round 23 A-F1: any sqlite error at the first open (a full disk, no file descriptor left) moved the map
    aside as unreadable and started it empty: every kept file was fetched (and applied) again. Only a file that is
    not a database of these files is moved aside; a passing failure fails the lookup (retried next sync)."""
    _filled(tmp_path)
    real_connect = sqlite3.connect

    def connect(*_args: object, **_kwargs: object) -> sqlite3.Connection:
        raise _failing_open(code)

    monkeypatch.setattr(sqlite3, "connect", connect)
    files = store(tmp_path)
    with pytest.raises(sqlite3.OperationalError):
        files.get("/inbox/1.csv", "1:1")
    monkeypatch.setattr(sqlite3, "connect", real_connect)
    assert "crm_sync.set_aside.unreadable" not in [r.getMessage() for r in caplog.records]
    assert sorted(path.name for path in tmp_path.iterdir() if "unreadable" in path.name) == []
    assert files.get("/inbox/1.csv", "1:1") == SetAsideFile("1:1", "a" * 64, "imported")  # the next sync
    assert len(files.sources()) == 5


_NO_FILE_DESCRIPTOR_LEFT = """
import logging, os, resource, sys
from pathlib import Path
from cartera.portfolio.files.set_aside import SetAsideFiles
files = SetAsideFiles(Path(sys.argv[1]), logging.getLogger())
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
taken = []
try:
    while True:
        taken.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:
    files.get("/inbox/1.csv", "1:1")
except Exception as exc:
    print("raised", type(exc).__name__)
for fd in taken:
    os.close(fd)
print("remembered", len(files.sources()))
"""


@pytest.mark.abuse
def test_no_file_descriptor_left_at_the_first_open_keeps_the_map(tmp_path: Path) -> None:
    """Round 23 A-F1, as run: a process out of file descriptors moved the map aside and started it empty."""
    _filled(tmp_path)
    ran = subprocess.run(
        [sys.executable, "-c", _NO_FILE_DESCRIPTOR_LEFT, str(tmp_path / "set-aside.sqlite3")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.split("\n")[:2] == ["raised OperationalError", "remembered 5"], ran.stderr
    assert [path.name for path in tmp_path.iterdir() if "unreadable" in path.name] == []


@pytest.mark.abuse
def test_a_file_of_another_shape_is_moved_aside_and_no_aside_copy_is_ever_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Round 23 A-F6: each move aside replaced the copy an earlier one had kept. Not a database, a database whose
    ``files`` is of another shape: each is moved aside under a name of its own."""

    def fresh() -> None:
        files = store(tmp_path)
        assert files.sources() == {}
        files.close()

    (tmp_path / "set-aside.sqlite3").write_text("{not json")
    fresh()
    with contextlib.closing(sqlite3.connect(tmp_path / "set-aside.sqlite3")) as db, db:
        db.execute("DROP TABLE files")
        db.execute("CREATE TABLE files (name TEXT)")
    fresh()
    (tmp_path / "set-aside.sqlite3").write_bytes(b"\0" * 4096)
    fresh()
    asides = sorted(path for path in tmp_path.iterdir() if path.name.startswith("set-aside.sqlite3.unreadable"))
    kept = [path for path in asides if not path.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 3
    assert {path.read_bytes()[:9] for path in kept} == {b"{not json", b"SQLite fo", b"\0" * 9}
    assert [r.getMessage() for r in caplog.records].count("crm_sync.set_aside.unreadable") == 3


@pytest.mark.abuse
@pytest.mark.parametrize("failure", [OverflowError("cannot convert float infinity"), RecursionError("deep")])
def test_an_old_file_that_cannot_be_read_is_kept_and_warned_about_whatever_the_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    """Round 23 A-F5: an earlier version's file holding ``1e400`` (OverflowError) or deep nesting (RecursionError)
    made the adapter's construction raise, not the upgrade_failed warning its docstring promises."""
    old = tmp_path / "unarchived.json"
    old.write_text("[]")

    def read(_path: Path) -> list[tuple[str, SetAsideFile]]:
        raise failure

    store(tmp_path).upgrade([old], read)
    assert old.exists()
    assert "crm_sync.set_aside.upgrade_failed" in [r.getMessage() for r in caplog.records]
