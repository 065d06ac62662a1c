"""The ``sql`` crm_sync adapter: assignments from the creditor's view, activities into the creditor's table.

The view is read in pages of ``page_rows`` rows in (watermark, key) order (a page never ends among rows of an
equal pair: such a run is read whole into it), each page streamed from the server
and delivered as a snapshot: CSV with the view's column names (``;``, UTF-8, decimal point, ISO dates), the
watermark and key last. Core imports the snapshot like any file, so a page read again after a crash has the
same content hash and changes nothing; acknowledging a page moves the stored position past it. A page rejected
whole (a cell the CSV reader refuses, such as one over its field size limit) is set aside as its snapshot in
the data directory's ``rejected/``; the position stays before it, and ``fetch`` holds there (yielding
nothing, logging ``crm_sync.sql.held``) until the creditor corrects the rows and the page reads differently. A
page neither acknowledged nor set aside (its import or report failed) ends the read: the next fetch reads it again.
``import FILE`` takes a snapshot in the same format (``psql \\copy (SELECT ...) TO FILE CSV HEADER DELIMITER ';'``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from cartera.plugin import (
    Activity,
    AdapterRegistry,
    AmbiguousColumn,
    AssignmentBatch,
    AssignmentReader,
    CarteraError,
    CheckResult,
    CrmSync,
    CrmSyncCapabilities,
    CsvFormatConfig,
    DeliveryScope,
    FileRejected,
    PluginConfig,
    PluginContext,
    RowError,
    event,
    find_column,
    header_key,
    hookimpl,
    read_local,
    write_atomically,
)
from cartera.plugins.crm_sync.sql.client import (
    CreditorDatabase,
    CreditorDatabaseError,
    Position,
    StatementTimedOut,
    cells,
    is_cut,
)
from cartera.plugins.crm_sync.sql.config import SqlSyncConfig

SNAPSHOT_DATES = ("%Y-%m-%d",)
_T = TypeVar("_T")


class PositionDamaged(CarteraError):
    """The stored position file is not one this plugin wrote; the message names it and what to do."""


class SqlCrmSync(CrmSync[SqlSyncConfig]):
    """One creditor's database: a view of assignments read incrementally, a table the activities go into."""

    name: ClassVar[str] = "sql"
    config_model: ClassVar[type[PluginConfig]] = SqlSyncConfig
    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities(rejection_reports=True, restricts_deliveries=True)

    def __init__(self, config: SqlSyncConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        snapshot = CsvFormatConfig(
            creditor=config.creditor,
            portfolio=config.portfolio,
            currency=config.currency,
            delimiter=";",
            encoding="utf-8",
            decimal_comma=False,
            date_formats=SNAPSHOT_DATES,
            actions=config.actions,
            columns=config.columns,
        )
        self._reader = AssignmentReader(snapshot)
        self._position_file = context.data_dir / "position.json"
        self._rejected_dir = context.data_dir / "rejected"
        #: pages fetched and not yet acknowledged or set aside: their end, snapshot, and account by line
        self._unacknowledged: dict[str, tuple[Position, bytes, dict[int, str]]] = {}
        #: where each of those pages starts (its ``since`` text): a page set aside is kept per start
        self._starts: dict[str, str] = {}
        self._db: CreditorDatabase | None = None

    @property
    def db(self) -> CreditorDatabase:
        if self._db is None:
            self._db = CreditorDatabase(self.config.url.get_secret_value(), self.config.statement_timeout_s)
        return self._db

    def stop(self) -> None:
        if self._db is not None:
            self._db.dispose()

    def check(self) -> CheckResult:
        tables = {self.config.activities_table: list(self.config.activity_columns.values())}
        if self.config.rejections_table is not None:
            tables[self.config.rejections_table] = list(self.config.rejection_columns.model_dump().values())
        try:
            columns, order, types = self._layout()
            self.db.probe(self.config.view, columns)
            self._probe_order(order, types)
            for table, table_columns in tables.items():
                self.db.probe(table, table_columns)
            self._check_export_columns()
            position = self._position()
            if position is not None:
                self._stored_read(
                    lambda: list(self.db.rows(self.config.view, [], order, types, after=position, limit=1))
                )
        except (CreditorDatabaseError, FileRejected, PositionDamaged) as exc:
            return CheckResult(False, str(exc))
        since = position.describe(order) if position else "from the start"
        return CheckResult(
            True,
            f"{self.db.display}: view {self.config.view} readable ({len(columns)} columns, next read {since}); "
            f"table(s) {', '.join(tables)} readable",
        )

    def delivers(self) -> DeliveryScope:
        """The configured creditor's configured portfolio: every row of the view is stamped with them."""
        return DeliveryScope.of(self.config.creditor, self.config.portfolio)

    def read_file(self, path: Path) -> AssignmentBatch:
        """A snapshot of the view as CSV (the format pages are delivered in)."""
        return read_local(self._reader, path)

    def _probe_order(self, order: tuple[str, str], types: dict[str, Any]) -> None:
        """Read the view's first row and then past it: the view can be read in (watermark, key) order and a
        position in those columns kept and compared (a type without an order, or one SQLAlchemy does not know,
        fails here rather than at the first sync)."""
        view = self.config.view
        try:
            first = [tuple(row) for row in self.db.rows(view, [], order, types, after=None, limit=1)]
            if first:
                list(self.db.rows(view, [], order, types, after=Position(*_pair(first[0])), limit=1))
        except CreditorDatabaseError as exc:
            raise CreditorDatabaseError(
                f"view {view}: rows cannot be read in order of, and past a position in, ({', '.join(order)}): {exc}"
            ) from None

    def fetch(self) -> Iterator[AssignmentBatch]:
        columns, order, types = self._layout()
        after = stored = self._position()
        self._unacknowledged.clear()
        self._starts.clear()
        previous: set[bytes] = set()  # the previous page's rows (a digest of their cells but the watermark)
        moved = columns.index(order[0])
        while True:
            if after is not None and after is stored:
                page = self._stored_read(partial(self._page, columns, order, types, after))
            else:
                page = self._page(columns, order, types, after)
            if not page:
                return
            more = len(page) > self.config.page_rows
            page = page[: self.config.page_rows] if not more else self._whole_runs(columns, order, types, page)
            since = after.describe(order) if after else "from the start"
            rows = {_digest(record[:moved] + record[moved + 1 :]) for record in map(cells, (v[:-3] for v in page))}
            if not previous.isdisjoint(rows):
                # a row of the previous page again with a later watermark: one computed at read time (now()) reads
                # the view anew on every page, for ever; the rest waits for the next run (which reads a page)
                event(
                    self.context.log,
                    "crm_sync.sql.rows_again",
                    logging.WARNING,
                    view=self.config.view,
                    position=since,
                    hint="the watermark changes on every read (set it at commit, not now())",
                )
                return
            previous = rows
            parts: list[str] = []
            writer = _SnapshotWriter(parts)
            writer.writerow(columns)
            lines, refs = parts[-1].count("\n"), {}
            for values in page:
                record = cells(values[:-3])
                writer.writerow(record)
                refs[lines + 1] = record[0]  # numbered as core's reader does: the line the record starts on
                lines += parts[-1].count("\n")
            count, end = len(page), Position(*_pair(page[-1]))
            data = "".join(parts).encode()
            batch = self._reader.batch(f"{self.config.view} {since}, {count} row(s)", partial(io.BytesIO, data))
            held = self._held(batch, since)
            if held is not None:
                event(
                    self.context.log,
                    "crm_sync.sql.held",
                    logging.WARNING,
                    view=self.config.view,
                    position=since,
                    rejected=str(held),
                )
                return
            self._unacknowledged[batch.content_sha256] = (end, data, refs)
            self._starts[batch.content_sha256] = since
            yield batch
            if batch.content_sha256 in self._unacknowledged:
                return  # neither acknowledged nor set aside (its delivery failed): the next run reads it again
            if not more or self._held(batch, since) is not None:
                return  # the last page, or one rejected: the rows after it wait until it is corrected
            after = end

    def _stored_read(self, read: Callable[[], _T]) -> _T:
        """``read()`` (a read past the stored position); its error also names the position's file."""
        try:
            return read()
        except StatementTimedOut:
            raise  # the view did not answer: the position is not at fault
        except CreditorDatabaseError as exc:
            raise CreditorDatabaseError(
                f"{exc} (reading past the position stored in {self._position_file}: if that file is damaged, delete "
                "it to read the view from the start)"
            ) from None

    def _page(
        self, columns: list[str], order: tuple[str, str], types: dict[str, Any], after: Position | None
    ) -> list[tuple[Any, ...]]:
        """Up to ``page_rows`` + 1 rows after ``after`` (the one more tells whether the page ends inside a run),
        rows of equal (watermark, key) in the order of their cells, so a page reads the same each time."""
        rows = [
            tuple(row)
            for row in self.db.rows(
                self.config.view, columns, order, types, after=after, limit=self.config.page_rows + 1
            )
        ]
        return [row for _, run in itertools.groupby(rows, _run) for row in sorted(run, key=_cells_key)]

    def _whole_runs(
        self, columns: list[str], order: tuple[str, str], types: dict[str, Any], page: list[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """``page`` (``page_rows`` + 1 rows) cut to ``page_rows``, but never inside a run of rows of equal
        (watermark, key): the next read starts after the pair, so the run's rows past the page would be skipped.
        Such a run is read whole into the page (and logged: the pair should be unique)."""
        last, following = page[self.config.page_rows - 1], page[self.config.page_rows]
        if _run(last) != _run(following) or any(map(is_cut, _pair(last))):
            return page[: self.config.page_rows]  # a cut pair's cell rejects the page: no run to read whole
        at = Position(*_pair(last))
        run = sorted(
            (tuple(row) for row in self.db.rows(self.config.view, columns, order, types, at=at)), key=_cells_key
        )
        before = list(itertools.takewhile(lambda row: _run(row) != _run(last), page))
        event(
            self.context.log,
            "crm_sync.sql.duplicate_order",
            logging.WARNING,
            view=self.config.view,
            pair=at.describe(order).removeprefix("after "),
            rows=len(run),
        )
        return before + run

    def acknowledge(self, batch: AssignmentBatch) -> None:
        """Store the position after the page, so the next fetch starts there."""
        page = self._unacknowledged.pop(batch.content_sha256, None)
        if page is None:
            return
        end = page[0]
        document = {"view": self.config.view, "order": list(self._order), **end.to_json()}
        content = json.dumps(document).encode()

        def write(sink: IO[bytes]) -> None:
            sink.write(content)

        write_atomically(self._position_file, write)
        event(self.context.log, "crm_sync.sql.position", view=self.config.view, position=end.describe(self._order))

    def reject(self, batch: AssignmentBatch) -> None:
        """Keep the snapshot of a page rejected whole in ``rejected/``; the position does not move, and
        ``fetch`` holds before the page while the view reads it the same. One snapshot is kept per position: a
        page that reads differently each time (a volatile cell) replaces the one set aside before it."""
        page = self._unacknowledged.pop(batch.content_sha256, None)
        since = self._starts.pop(batch.content_sha256, None)
        if page is None or since is None:
            return
        self._rejected_dir.mkdir(parents=True, exist_ok=True)
        target = self._set_aside(batch, since)

        def write(sink: IO[bytes]) -> None:
            sink.write(page[1])

        write_atomically(target, write)
        for older in self._rejected_dir.glob(f"{_start_tag(since)}-*.csv"):
            if older != target:
                older.unlink(missing_ok=True)
        event(self.context.log, "crm_sync.sql.set_aside", view=self.config.view, page=batch.source, to=str(target))

    def _set_aside(self, batch: AssignmentBatch, since: str) -> Path:
        """Where a page starting at ``since`` is kept when rejected: named by its start and its content."""
        return self._rejected_dir / f"{_start_tag(since)}-{batch.content_sha256}.csv"

    def _held(self, batch: AssignmentBatch, since: str) -> Path | None:
        """The snapshot this page was set aside as, if it was (also under the older name, its hash alone)."""
        for path in (self._set_aside(batch, since), self._rejected_dir / f"{batch.content_sha256}.csv"):
            if path.exists():
                return path
        return None

    def report_rejections(self, batch: AssignmentBatch, errors: Sequence[RowError]) -> None:
        """Insert each quarantined row of a page into the rejections table, once (ids: page hash and line)."""
        page = self._unacknowledged.get(batch.content_sha256)
        if self.config.rejections_table is None or page is None:
            return
        refs = page[2]
        names, now = self.config.rejection_columns, self.context.clock.now()
        records = [
            {
                names.id: f"{batch.content_sha256[:16]}-{error.line}",
                names.account_ref: refs.get(error.line, ""),
                names.field: error.field,
                names.reason: error.reason,
                names.at: now,
            }
            for error in errors
        ]
        inserted = self.db.insert_new(self.config.rejections_table, records, names.id)
        event(self.context.log, "crm_sync.sql.rejections", table=self.config.rejections_table, inserted=inserted)

    def export(self, activities: Sequence[Activity]) -> None:
        """Insert the activities not in the table yet (by seq), all in one transaction."""
        if not activities:
            return
        mapping = self.config.activity_columns
        records = [{column: _field(activity, name) for name, column in mapping.items()} for activity in activities]
        self._check_export_columns()  # refused, never rounded by a narrower column (the table can change)
        inserted = self.db.insert_new(self.config.activities_table, records, mapping["seq"])
        event(self.context.log, "crm_sync.sql.exported", table=self.config.activities_table, inserted=inserted)

    def _check_export_columns(self) -> None:
        self.db.check_export_columns(self.config.activities_table, self.config.activity_columns)

    def _layout(self) -> tuple[list[str], tuple[str, str], dict[str, Any]]:
        """The view's names of the mapped columns in snapshot order (our fields, then watermark and key), of the
        (watermark, key) columns, and the types of the view's columns."""
        types = self.db.columns(self.config.view)
        found = list(types)
        names = self.config.columns
        order = self._order

        def find(name: str) -> str | None:
            """The view's column for ``name``: the same rule as the CSV reader's header (an exact spelling wins;
            several equal ignoring case and accents, none exact, refuse the view naming them)."""
            try:
                index = find_column(name, found)
            except AmbiguousColumn as exc:
                raise FileRejected(f"view {self.config.view}", str(exc)) from None
            return None if index is None else found[index]

        required = (names.account_ref, names.debtor_name, names.balance, *order)
        missing = [name for name in required if find(name) is None]
        if not any(find(name) is not None for name in names.phones):
            missing.append(" or ".join(names.phones))
        if missing:
            raise FileRejected(
                f"view {self.config.view}",
                f"missing column(s) {', '.join(missing)} (found: {', '.join(found)})",
            )
        fields = (names.account_ref, names.debtor_name, *names.phones, names.balance, names.currency, names.action)
        extra = (names.payment_date, names.payment_ref, names.due_date, names.days_past_due, names.risk_score)
        wanted = (*fields, *extra, *order)
        columns = list(dict.fromkeys(column for name in wanted if (column := find(name)) is not None))
        watermark, key = (find(name) or name for name in order)  # both found: required above
        return columns, (watermark, key), types

    @property
    def _order(self) -> tuple[str, str]:
        """The configured (watermark, key) columns the view is read in the order of."""
        return self.config.watermark, self.config.key_column

    def _position(self) -> Position | None:
        """The stored position, if it was stored for this view read in this order: a position of another view, or
        of other (watermark, key) columns, says nothing about this one, and the view is read from the start (each
        row imported again is unchanged). A position stored before the order was kept is taken as this order's.
        :class:`PositionDamaged` when the file is not a position."""
        try:
            content = self._position_file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = json.loads(content)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            view, order = document.get("view"), document.get("order", list(self._order))
            if not (view is None or isinstance(view, str)):
                raise ValueError("the view is not a name")
            if not (isinstance(order, list) and len(order) == 2 and all(isinstance(name, str) for name in order)):
                raise ValueError("the order is not two column names")
            if view == self.config.view and list(map(header_key, order)) == list(map(header_key, self._order)):
                return Position.from_json(document)
        except ValueError as exc:
            raise PositionDamaged(
                f"{self._position_file}: not a position of the view ({str(exc)[:200]}); delete it to read the view "
                "from the start (each row imported again is unchanged)"
            ) from None
        event(
            self.context.log,
            "crm_sync.sql.position_reset",
            logging.WARNING,
            stored=f"{view} by {', '.join(order)}",
            now=f"{self.config.view} by {', '.join(self._order)}",
        )
        return None


def _digest(record: list[str]) -> bytes:
    return hashlib.sha256(json.dumps(record).encode()).digest()


def _start_tag(since: str) -> str:
    """A page start's part of a set-aside snapshot's name."""
    return hashlib.sha256(since.encode()).hexdigest()[:16]


def _pair(row: tuple[Any, ...]) -> tuple[Any, Any]:
    """A fetched row's (watermark, key) text."""
    return row[-3], row[-2]


def _run(row: tuple[Any, ...]) -> Any:
    """A fetched row's run in its query: rows of (watermark, key) equal by the database's equality share it (their
    texts may differ: ``1.0`` and ``1.00``)."""
    return row[-1]


def _cells_key(row: tuple[Any, ...]) -> list[str]:
    return cells(row)


class _Sink:
    """Where ``csv.writer`` puts each record's text: a list, so each record's lines can be counted."""

    def __init__(self, parts: list[str]) -> None:
        self.write = parts.append


class _SnapshotWriter:
    """A page's snapshot writer: ``;``-separated records ended by ``\\n``. A record with a lone CR in a cell has
    every cell quoted (``QUOTE_MINIMAL`` quotes only the characters of the line terminator, so the CR would be left
    bare and core's reader refuse the page); every other record is written as before, so its page reads the same."""

    def __init__(self, parts: list[str]) -> None:
        self._plain = csv.writer(_Sink(parts), delimiter=";", lineterminator="\n")
        self._quoted = csv.writer(_Sink(parts), delimiter=";", lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, record: Sequence[str]) -> None:
        (self._quoted if any("\r" in cell for cell in record) else self._plain).writerow(record)


def _field(activity: Activity, name: str) -> Any:
    value = getattr(activity, name)
    return value.value if name == "kind" else value


@hookimpl
def cartera_register_crm_syncs(register: AdapterRegistry[CrmSync[Any]]) -> None:
    register.add(SqlCrmSync)
