"""Red-team round 20 I-F2: a failed append (disk full, a file-size limit on var/) left its bytes behind.

The SMS outbox and the SMPP submit ledger appended through a buffered file: when a write failed (EFBIG here,
ENOSPC alike) the text was marked failed, yet the part the kernel took was in the file and the rest stayed in the
buffer, written whole with the next append (a "failed" text sent anyway) or, when the process ended, left torn
with the next text's line glued to it (a text recorded delivered that no reader can parse). Each line is now one
unbuffered write, cut off again when it fails. The limit is set in a child process (RLIMIT_FSIZE), so the
failure comes from the kernel, as on a full disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.abuse

CHILD = textwrap.dedent(
    """
    import logging, resource, sqlite3, sys
    from datetime import UTC, datetime
    from pathlib import Path

    from cartera.plugin import SetAsideFiles
    from cartera.plugins.sms.outbox.client import OutboxFile
    from cartera.plugins.sms.smpp.ledger import SubmitLedger

    outbox_path, ledger_path, kept_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    at = datetime(2026, 12, 5, tzinfo=UTC)
    NAMES = ("uno", "dos", "tres")


    def limited(path, call, room=100):
        before = path.read_bytes()
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + room, hard))
        try:
            call()
        except OSError as exc:
            print("raised", exc.errno)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        print("unchanged", path.read_bytes() == before)


    # the running node: one outbox open all along
    node = OutboxFile(outbox_path, fsync=True)
    node.open()
    node.append(message_id=1, to="+573001", text="uno", at=at)
    limited(outbox_path, lambda: node.append(message_id=2, to="+573002", text="DOS-FAILED " * 80, at=at))
    node.append(message_id=3, to="+573003", text="tres", at=at)
    node.close()
    # a CLI process: its outbox closed after the failure, the next text appended by another one
    cli = OutboxFile(outbox_path, fsync=False)
    cli.open()
    limited(outbox_path, lambda: cli.append(message_id=4, to="+573004", text="CUATRO " * 80, at=at))
    cli.close()
    later = OutboxFile(outbox_path, fsync=False)
    later.open()
    later.append(message_id=5, to="+573005", text="cinco", at=at)
    later.close()

    ledger = SubmitLedger(ledger_path, fsync=True, retention_s=86400)
    ledger.open()
    ledger.sent(1, 1, 1)
    limited(ledger_path, lambda: ledger.sent(2, 1, 1), room=10)
    ledger.sent(3, 1, 1)
    ledger.close()

    # the csv/sftp_csv memory of files left in the inbox: a SQLite transaction, so a failed write leaves it as it was
    kept = SetAsideFiles(kept_path, logging.getLogger())
    kept.remember("/inbox/uno.csv", "1", "a" * 64, "imported")
    resource.setrlimit(resource.RLIMIT_FSIZE, (10, hard))  # no write past 10 bytes, in the database or its log
    try:
        kept.remember("/inbox/dos.csv", "2", "b" * 64, "imported")
    except sqlite3.Error as exc:
        print("raised", type(exc).__name__)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    kept.remember("/inbox/tres.csv", "3", "c" * 64, "imported")
    print("holds", [kept.get(f"/inbox/{name}.csv", str(n)) is not None for n, name in enumerate(NAMES, 1)])
    kept.close()
    again = SetAsideFiles(kept_path, logging.getLogger())
    print("holds", [again.get(f"/inbox/{name}.csv", str(n)) is not None for n, name in enumerate(NAMES, 1)])
    """
)


def test_a_failed_append_leaves_the_outbox_and_the_ledgers_as_they_were(tmp_path: Path) -> None:
    outbox, ledger = tmp_path / "sms-outbox.jsonl", tmp_path / "smpp" / "submit-ledger.jsonl"
    kept = tmp_path / "set-aside.sqlite3"
    ledger.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(outbox), str(ledger), str(kept)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = (
        ["raised 27", "unchanged True"] * 3 + ["raised OperationalError"] + ["holds [True, False, True]"] * 2 + [""]
    )
    assert result.stdout.split("\n") == expected, result.stdout
    lines = outbox.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["message_id"] for line in lines[:-1]] == [1, 3, 5]
    events = [json.loads(line) for line in ledger.read_bytes().splitlines()]
    assert [(e["e"], e["m"]) for e in events] == [("sent", 1), ("sent", 3)]
