"""``run_site.py``: the operator's command line. Exit codes: 0 ok, 1 operational failure, 2 usage or config.

Only the command run is defined in full, and each command imports what it needs when it runs: ``--help``, a
usage error or ``plugins`` import none of the node.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Never

from cartera.cli.malloc import tune_malloc
from cartera.cli.passwords import PASSWORD_ENV, new_password
from cartera.core.control_characters import escape_controls
from cartera.core.errors import CarteraError, UsageError
from cartera.core.logs import configure
from cartera.core.redaction import RedactingStream, redacted_output

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from tqdm import tqdm

    from cartera.node import Node
    from cartera.recordings.access import Reach, RecordingView
    from cartera.users.directory import User

log = logging.getLogger("cartera.cli")

#: ``users add`` reads the new user's password from this variable (for scripts) or else prompts for it.
_PORTFOLIO_HELP = "grant only this portfolio, CREDITOR/CODE (or CODE when one creditor has it); repeatable"
_ACCOUNT_HELP = "REF, PORTFOLIO/REF or CREDITOR/PORTFOLIO/REF"


#: Permission bits no file or folder the node creates has: the store and the creditors' files (batches, exports,
#: the SMS outbox) hold every creditor's debtors and the users' password hashes, so no other user of the host, not
#: even of the service's group (a creditor's pick-up account), reads them: files 0600, folders 0700. Only the
#: files a creditor picks up get the mode its plugin's ``file_mode`` says.
PRIVATE_UMASK = 0o077

#: ``call --wait`` at most (a day); larger, infinite or NaN is refused before the call is placed.
MAX_WAIT_SECONDS = 86400
#: The largest row id the store holds (SQLite's and PostgreSQL's bigint): a larger id names no recording.
MAX_ROW_ID = 2**63 - 1


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line, every command named; only ``command``'s arguments are defined (importing what their
    choices and defaults come from), and only its parser answers ``--help``."""
    parser = argparse.ArgumentParser(prog="run_site.py", description="Run and operate one Cartera site node.")
    parser.add_argument("--config", type=Path, default=Path("sites.toml"), help="sites file (default ./sites.toml)")
    parser.add_argument("--site", help="site name in the sites file (not needed for 'plugins')")
    parser.add_argument("--log-format", choices=("text", "json"), help="override the site's log_format")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in _COMMANDS.items():
        defined = name == command
        sub = commands.add_parser(name, help=spec.help, add_help=defined)
        if defined:
            spec.define(sub)
    return parser


def _command_in(argv: Sequence[str] | None) -> str | None:
    """The command ``argv`` names, read by the parser with no command defined (``--help`` alone is answered)."""
    command: str | None = build_parser().parse_known_args(argv)[0].command
    return command


def _define_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        help="stop after this many seconds, more than 0 (default: until signalled)",
    )
    parser.add_argument(
        "--standby",
        action="store_true",
        help="PostgreSQL: if another node runs the site, wait and take it over when its lease expires",
    )


def _define_nothing(_parser: argparse.ArgumentParser) -> None:
    pass


def _define_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)


def _define_call(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("phone")
    parser.add_argument("--account")
    parser.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help=f"real seconds to wait for the outcome, 0 to {MAX_WAIT_SECONDS} (default 120)",
    )


def _define_sms(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("phone")
    parser.add_argument("text")
    parser.add_argument("--account")


def _define_sms_template(parser: argparse.ArgumentParser) -> None:
    from cartera.contact.sms_templates import REMINDER

    template_commands = parser.add_subparsers(dest="template_command", metavar="SUBCOMMAND", required=True)
    preview = template_commands.add_parser("preview", help="a template filled for an account: text, encoding, cost")
    preview.add_argument("--account", required=True)
    preview.add_argument("--template", default=REMINDER, help=f"template name (default {REMINDER})")


def _define_sms_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--template", required=True)
    parser.add_argument("--portfolio", required=True, help="CREDITOR/PORTFOLIO or PORTFOLIO")
    parser.add_argument("--dry-run", action="store_true", help="show count, segments, cost and refusals; send nothing")


def _define_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account")
    parser.add_argument("--phone")
    parser.add_argument("--channel", choices=("call", "sms"), default="call")
    parser.add_argument("--at", help="ISO date-time; site time when no offset (default: now)")


def _define_campaign(parser: argparse.ArgumentParser) -> None:
    campaign_commands = parser.add_subparsers(dest="campaign_command", metavar="SUBCOMMAND", required=True)
    queue = campaign_commands.add_parser("queue", help="the next accounts the campaign calls, their score and why")
    queue.add_argument("--top", type=int, default=20, help="how many (default 20)")
    queue.add_argument("--at", help="ISO date-time; site time when no offset (default: now)")


def _define_archive(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backfill", action="store_true", help="archive a large spool: a progress bar, runs until nothing is left"
    )


def _define_recordings(parser: argparse.ArgumentParser) -> None:
    from cartera.recordings.access import MAX_URL_SECONDS

    rec_commands = parser.add_subparsers(dest="recordings_command", metavar="SUBCOMMAND", required=True)
    search = rec_commands.add_parser("search", help="search the recordings catalog")
    search.add_argument("--account", help=_ACCOUNT_HELP)
    search.add_argument("--portfolio", help="CREDITOR/CODE or CODE")
    search.add_argument("--phone")
    search.add_argument("--agent")
    search.add_argument("--since", help="ISO date or date-time; site time when no offset")
    search.add_argument("--until", help="ISO date or date-time; site time when no offset")
    search.add_argument(
        "--all-sites",
        action="store_true",
        help="every site on this store (with --user: the sites granted to that user), with a SITE column",
    )
    search.add_argument(
        "--user", metavar="NAME", help="only what web user NAME may see (its grants here, or with --all-sites)"
    )
    search.add_argument("--json", action="store_true", help="print a JSON array")
    get = rec_commands.add_parser("get", help="write a recording to a file, verifying its sha256")
    get.add_argument("id", type=int)
    get.add_argument("-o", "--output", type=Path, required=True)
    url = rec_commands.add_parser("url", help="print a presigned URL to a recording (audited)")
    url.add_argument("id", type=int)
    url.add_argument(
        "--expires", type=int, default=300, metavar="SECONDS", help=f"validity, at most {MAX_URL_SECONDS} (default 300)"
    )
    for name, what in (("hold", "put a recording on legal hold"), ("release", "release a recording's legal hold")):
        hold = rec_commands.add_parser(name, help=what)
        hold.add_argument("id", type=int)
        hold.add_argument("--reason", required=True, help="why (case number, request): written to the audit log")


def _define_users(parser: argparse.ArgumentParser) -> None:
    from cartera.users.directory import Role

    user_commands = parser.add_subparsers(dest="users_command", metavar="SUBCOMMAND", required=True)
    add = user_commands.add_parser(
        "add", help=f"add a user granted this site; password from ${PASSWORD_ENV} or a prompt (never an argument)"
    )
    add.add_argument("name")
    add.add_argument("--role", choices=[role.value for role in Role], required=True)
    add.add_argument("--portfolio", action="append", default=[], help=_PORTFOLIO_HELP)
    add.add_argument("--extension", help="an agent's identity at the site's dialer (queue member, SIP agent, seat)")
    grant = user_commands.add_parser("grant", help="replace what a user is granted at this site")
    grant.add_argument("name")
    grant.add_argument("--portfolio", action="append", default=[], help=_PORTFOLIO_HELP)
    user_commands.add_parser("list", help="list users, their roles and grants")
    disable = user_commands.add_parser("disable", help="disable a user (sessions end at their next request)")
    disable.add_argument("name")


def _define_contact_prefs(parser: argparse.ArgumentParser) -> None:
    from cartera.cli import contact_prefs

    contact_prefs.define(parser)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly, like any Unix tool
    inherited = os.umask(PRIVATE_UMASK)
    os.umask(inherited | PRIVATE_UMASK)  # the operator's umask, never less strict
    try:
        args = build_parser(_command_in(argv)).parse_args(argv)
        with redacted_output():  # all the command writes, logs and tracebacks included, passes the site's redaction
            return _main(args)
    finally:
        os.umask(inherited)  # as found, for a caller in the same process


def _main(args: argparse.Namespace) -> int:
    configure("text", logging.DEBUG if args.debug else logging.INFO)
    try:
        return _dispatch(args)
    except CarteraError as exc:
        if args.debug:
            log.exception("failed")
        shown = "\n".join(escape_controls(line) for line in str(exc).split("\n"))  # stored text can be in it
        print(f"error: {shown}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 1
    except Exception as exc:
        if args.debug:
            log.exception("failed")
            return 1
        # an error no one expected may carry a peer's words (a vendor library's message): escaped like theirs
        print(
            f"error: {type(exc).__name__}: {escape_controls(str(exc))} (run with --debug for details)", file=sys.stderr
        )
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command or "run"
    run = _COMMANDS[command].run
    if run is None:
        return _plugins()
    if not args.site:
        raise UsageError(f"'{command}' needs --site NAME")
    _check_seconds(args)
    if command == "run":
        tune_malloc()
    from cartera.node import Node

    node = Node.open(args.config, args.site)
    configure(args.log_format or node.site.section.log_format, logging.DEBUG if args.debug else logging.INFO)
    try:
        return run(node, args)
    finally:
        node.close()


def _check_seconds(args: argparse.Namespace) -> None:
    """Refuse, before the node opens, a ``run --duration`` or ``call --wait`` that is no sane number of seconds
    (NaN, infinite, negative, too long): ``run --duration nan`` stopped at once with exit 0, a restart loop a
    unit file's typo makes that looks healthy; ``call --wait 1e309`` crashed after placing the call."""
    duration: float | None = getattr(args, "duration", None)
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise UsageError(f"--duration: {duration:g} is not a number of seconds more than 0")
    wait: float | None = getattr(args, "wait", None)
    if wait is not None and not 0 <= wait <= MAX_WAIT_SECONDS:
        raise UsageError(f"--wait: {wait:g} is not a number of seconds from 0 to {MAX_WAIT_SECONDS}")


def _plugins() -> int:
    from cartera.core.hooks import load_plugins

    hooks = load_plugins()
    infos = hooks.describe(hooks.collect_adapters())
    _print_table([("KIND", "NAME", "VERSION", "ORIGIN"), *[(i.kind, i.name, i.version, i.origin) for i in infos]])
    return 0


def _run(node: Node, args: argparse.Namespace) -> int:
    from cartera.cli.summary import site_summary

    started = time.monotonic()
    began = node.clock.now()
    node.run(getattr(args, "duration", None), standby=getattr(args, "standby", False))
    print(site_summary(node, began, time.monotonic() - started))
    return 0


def _check(node: Node, _args: argparse.Namespace) -> int:
    lines = node.check()
    for line in lines:  # a detail is a vendor's words (an smsbox's refusal, an AMI peer's message): escaped
        print(f"{'ok  ' if line.result.ok else 'FAIL'}  {line.what}: {escape_controls(line.result.detail)}")
    if (lease := node.lease_holder()) is not None:  # which node works the site (PostgreSQL), as another host wrote it
        print(f"info  node: {escape_controls(lease.describe(datetime.now(UTC))[1])}")
    failed = [line.what for line in lines if not line.result.ok]
    if failed:
        print(f"check failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"site {node.site.name!r}: all checks passed")
    return 0


def _import(node: Node, args: argparse.Namespace) -> int:
    from cartera.core.audit import os_user
    from cartera.core.durable import file_kind
    from cartera.core.models import FileRejected

    sync = node.creditor_sync()
    path: Path = args.file
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    if not stat.S_ISREG(mode):  # a FIFO would block the import forever
        raise UsageError(f"{path}: is not a regular file ({file_kind(mode)})")
    try:
        report = sync.import_file(path, actor=os_user())
    except FileRejected as exc:
        print(f"error: {escape_controls(str(exc))} (nothing was loaded)", file=sys.stderr)
        return 1
    print(report.summary())
    for error in report.quarantined:
        print(escape_controls(f"  quarantined {path}:{error.line}: {error.field}: {error.reason}"))
    return 0


def _call(node: Node, args: argparse.Namespace) -> int:
    from cartera.contact.targets import Denied
    from cartera.core.audit import os_user

    try:
        request = node.calls.place_call(phone=args.phone, account=args.account, actor=os_user())
    except Denied as denied:
        print(f"call not placed: {denied}", file=sys.stderr)
        return 1
    print(f"attempt {request.attempt_id}: calling {request.phone}")
    result = node.calls.wait_for_call(request.attempt_id, args.wait)
    if result is None:
        print(f"attempt {request.attempt_id}: no outcome after {args.wait:g}s; hanging up", file=sys.stderr)
        return 1
    cause = escape_controls(result.raw_cause)  # the PBX's or the SIP trunk's words
    print(f"attempt {request.attempt_id}: {result.outcome} ({cause}), talk {result.talk_seconds:.0f}s")
    return 0


def _sms(node: Node, args: argparse.Namespace) -> int:
    from cartera.contact.targets import Denied
    from cartera.core.audit import os_user

    try:
        result = node.texts.send_sms(phone=args.phone, text=args.text, account=args.account, actor=os_user())
    except Denied as denied:
        print(f"sms not sent: {denied}", file=sys.stderr)
        return 1
    # the gateway's words, escaped: an SMSC's or smsbox's text must not drive the operator's terminal
    gateway_id, detail = escape_controls(result.gateway_id or "-"), escape_controls(result.detail or "")
    print(f"message {result.message_id}: {result.state} (gateway id {gateway_id}) {detail}")
    return 0 if result.state != "failed" else 1


def _sms_template(node: Node, args: argparse.Namespace) -> int:
    rendered = node.texts.render_sms(args.template, args.account)
    if rendered is None:
        defined = ", ".join(node.texts.templates.names()) or "none"
        raise UsageError(f"no SMS template {args.template!r} for account {args.account!r} (defined: {defined})")
    print(f"template {rendered.template!r} for account {rendered.account_ref}:")
    print("\n".join(f"  {escape_controls(line)}" for line in rendered.text.splitlines()))
    print(
        f"{len(rendered.text)} characters, {rendered.encoding}, {rendered.segments} segment(s), "
        f"cost {rendered.cost} {rendered.currency}"
    )
    return 0


def _sms_batch(node: Node, args: argparse.Namespace) -> int:
    from cartera.contact.sms_batch import plan_batch, send_batch
    from cartera.core.audit import os_user

    plan = plan_batch(node.texts, args.template, args.portfolio, node.clock.now())
    print(plan.summary())
    if args.dry_run:
        return 0
    outcome = send_batch(node.texts, plan, os_user())
    print(outcome.summary())
    for failure in outcome.failures:
        print(f"  failed: {escape_controls(failure)}", file=sys.stderr)
    return 1 if outcome.failed else 0


def _archive(node: Node, args: argparse.Namespace) -> int:
    """Archive as the node's job does, holding the site's lock as ``run`` does: beside a running node the command
    is refused (exit 2), never racing the node's own archival over the same recordings."""
    from cartera.core.store.site_lock import SiteAlreadyRunning, hold_site

    if node.archiver is None:
        raise UsageError(f"site {node.site.name!r} has no recording store configured")
    try:
        with hold_site(node.db, node.site.name):
            return _archive_held(node, args)
    except SiteAlreadyRunning as exc:
        raise SiteAlreadyRunning(f"{exc}: its node archives the recordings: stop it to run 'archive' by hand") from None


def _archive_held(node: Node, args: argparse.Namespace) -> int:
    assert node.archiver is not None
    if not args.backfill:
        run = node.archiver.run_once()
        print(f"archive: {escape_controls(str(run))}")  # an unavailable store's error is the S3 peer's words
        return 0 if run.ok else 1
    while True:  # the spool may grow while a large backfill runs: go on until a run finds nothing new
        with _ProgressBar() as bar:
            run = node.archiver.run_once(bar)
        print(f"archive: {escape_controls(str(run))}")
        if not run.ok or not (run.found or run.archived):
            return 0 if run.ok else 1


class _ProgressBar:
    """A tqdm bar on stderr over the recordings of one archival run."""

    def __init__(self) -> None:
        self._bar: tqdm[Never] | None = None
        self._bytes = 0

    def start(self, files: int) -> None:
        from tqdm import tqdm  # imported where a bar is drawn only

        self._bar = tqdm(total=files, unit="rec", desc="archive", file=sys.stderr, dynamic_ncols=True)

    def advance(self, size: int) -> None:
        if self._bar is not None:
            self._bytes += size
            self._bar.set_postfix_str(f"{self._bytes / 1e6:.1f} MB", refresh=False)
            self._bar.update()

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _recordings(node: Node, args: argparse.Namespace) -> int:
    from cartera.core.audit import os_user
    from cartera.recordings.access import SearchFilters

    if args.recordings_command != "search" and not 0 < args.id <= MAX_ROW_ID:
        raise UsageError(f"id: {args.id} is not a recording id (1 to {MAX_ROW_ID})")
    if args.recordings_command == "search":
        if args.account is not None and not args.all_sites:  # refused when it names accounts of two portfolios
            node.identity.account(args.account)
        filters = SearchFilters(
            account=args.account,
            portfolio=args.portfolio,
            phone=_phone_filter(node, args.phone),
            agent=args.agent,
            since=_when(node, args.since, "--since"),
            until=_when(node, args.until, "--until"),
            sites=_searched_sites(node, args.all_sites, args.user),
            as_user=args.user,
        )
        views = node.library.search(filters, actor=os_user())
        if args.json:
            print(json.dumps([view.as_dict() for view in views], indent=2, ensure_ascii=False))
        else:
            _print_recordings(views, node.site.zone, with_site=args.all_sites)
        return 0
    if args.recordings_command == "url":
        url = node.library.url(args.id, args.expires, actor=os_user())
        # A presigned URL carries the store's access key id by design (never its secret key): printed as is.
        stdout = sys.stdout
        print(url, file=stdout.unredacted if isinstance(stdout, RedactingStream) else stdout)
        return 0
    if args.recordings_command in ("hold", "release"):
        if not args.reason.strip():
            raise UsageError("--reason: say why (case number, request); a blank reason is not one")
        on = args.recordings_command == "hold"
        view = node.library.set_legal_hold(args.id, on, actor=os_user(), reason=args.reason)
        print(f"recording {view.id}: legal hold {'on' if on else 'released'}")
        return 0
    view = node.library.get(args.id, args.output, actor=os_user())
    print(f"recording {view.id} written to {args.output} ({view.size} bytes, sha256 {view.sha256} verified)")
    return 0


def _searched_sites(node: Node, all_sites: bool, user_name: str | None) -> Reach | None:
    """What ``recordings search`` spans: ``None`` (this site, all of it) unless ``--all-sites`` (every site on
    the store) or ``--user`` (that user's grants: at this site, or every site granted with ``--all-sites``)."""
    site = node.site.name
    if user_name is None:
        return dict.fromkeys(node.library.sites()) if all_sites else None
    user = next((user for user in node.users.everyone() if user.name == user_name), None)
    if user is None:
        raise UsageError(f"--user: no user {user_name!r} (see users list)")
    reach = user.reach()
    if all_sites:
        return reach
    if site not in reach:
        granted = ", ".join(reach) or "none"
        raise UsageError(f"--user: {user_name!r} has no grant for site {site!r} (granted: {granted})")
    return {site: reach[site]}


def _print_recordings(views: list[RecordingView], zone: ZoneInfo, *, with_site: bool = False) -> None:
    if not views:
        print("no recordings match")
        return
    header: tuple[str, ...] = (
        "ID",
        f"STARTED ({zone.key})",
        "PORTFOLIO",
        "ACCOUNT",
        "PHONE",
        "AGENT",
        "DURATION",
        "STATE",
    )
    body: list[tuple[str, ...]] = [
        (
            str(v.id),
            f"{datetime.fromisoformat(v.started_at).astimezone(zone):%Y-%m-%d %H:%M:%S}",
            v.portfolio or "-",
            v.account or "-",
            v.phone or "-",
            v.agent or "-",
            f"{v.duration_s:.0f}s",
            v.state,
        )
        for v in views
    ]
    if with_site:
        header, body = ("SITE", *header), [(v.site, *row) for v, row in zip(views, body, strict=True)]
    _print_table([header, *body])


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    """``rows`` in aligned columns, each cell escaped (a recording's agent is the PBX's words)."""
    rows = [[escape_controls(cell) for cell in row] for row in rows]
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _phone_filter(node: Node, phone: str | None) -> str | None:
    from cartera.contact.phones import InvalidPhone, normalize

    if phone is None:
        return None
    try:
        return normalize(phone, node.site.section.country)
    except InvalidPhone as exc:
        raise UsageError(f"--phone: {exc}") from None


def _users(node: Node, args: argparse.Namespace) -> int:
    from cartera.users.directory import ADMIN_SEES_ALL, AGENT_EXTENSION, Grant, Role

    directory = node.users
    if args.users_command in ("add", "grant"):
        if args.users_command == "add" and args.role == Role.ADMIN and args.portfolio:
            raise UsageError(f"--portfolio with --role admin: {ADMIN_SEES_ALL}")
        if args.users_command == "add" and (args.role == Role.AGENT) != (args.extension is not None):
            raise UsageError(f"--extension: {AGENT_EXTENSION}")
        keys = node.identity.portfolios(args.portfolio)
        grants = [Grant(node.site.name, key) for key in keys] or [Grant(node.site.name)]
        portfolios = [str(key) for key in keys] or "all"
        if args.users_command == "grant":
            user = directory.grant(args.name, node.site.name, grants)
            _audit_user(node, "users.grant", user.name, portfolios=portfolios)
            print(f"user {user.name!r} granted: {user.described_grants()}")
            return 0
        password = new_password(args.name)
        user = directory.add(args.name, password, Role(args.role), grants, args.extension)
        _audit_user(node, "users.add", user.name, role=user.role.value, portfolios=portfolios, extension=user.extension)
        print(f"user {user.name!r} ({user.role}) added: {user.described_grants()}")
        return 0
    if args.users_command == "disable":
        user = directory.disable(args.name)
        _audit_user(node, "users.disable", user.name)
        print(f"user {user.name!r} disabled")
        return 0
    users = directory.everyone()
    if not users:
        print("no users")
        return 0
    rows = [(u.name, _role(u), "disabled" if u.disabled else "active", u.described_grants()) for u in users]
    _print_table([("NAME", "ROLE", "STATE", "GRANTS"), *rows])
    return 0


def _role(user: User) -> str:
    return f"{user.role.value} ({user.extension})" if user.extension else user.role.value


def _audit_user(node: Node, action: str, name: str, **details: object) -> None:
    from cartera.core.audit import os_user

    node.audit.write(actor=os_user(), action=action, subject=f"user:{name}", **details)


def _explain(node: Node, args: argparse.Namespace) -> int:
    from cartera.contact.compliance.report import explanation
    from cartera.core.audit import os_user
    from cartera.core.models import Channel

    if args.account is None and args.phone is None:
        raise UsageError("explain needs --account or --phone")
    at = _when(node, args.at, "--at") or node.clock.now()
    channel = Channel(args.channel)
    decision, subject = node.explainer.explain(
        phone=args.phone, account=args.account, channel=channel, at=at, actor=os_user()
    )
    print(explanation(node.gate, decision, subject, at, node.site.zone))
    return 0


def _campaign(node: Node, args: argparse.Namespace) -> int:
    """``campaign queue``: callbacks first (one for an agent waits until the agent is ready in the running
    node: this process sees no agent), then broken promises, then by expected value."""
    if not 1 <= args.top <= 10_000:
        raise UsageError(f"--top: 1 to 10000, not {args.top}")
    at = _when(node, args.at, "--at") or node.clock.now()
    picks = node.call_list.queue(at, args.top, node.site.section.campaign.max_attempts_per_day)
    if not picks:
        print("no account is due")
    for number, pick in enumerate(picks, 1):
        value = "waiting" if pick.waiting else f"{pick.value:,.2f}"
        line = f"{number:>4}  {pick.ref:<24} {pick.priority.name.lower():<14} {value:>16}  {pick.why}"
        print(escape_controls(line))
    return 0


_EARLIEST, _LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _when(node: Node, text: str | None, option: str) -> datetime | None:
    """The instant ``text`` names (site time without an offset); refused outside 1900-9000, where windows and
    the database's dates would overflow."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an ISO date or date-time") from None
    value = value if value.tzinfo else value.replace(tzinfo=node.site.zone)
    try:
        in_range = _EARLIEST <= value.astimezone(UTC) < _LATEST
    except OverflowError:
        in_range = False
    if not in_range:
        raise UsageError(f"{option}: {text!r} is out of range (years 1900 to 8999)")
    return value


def _contact_prefs(node: Node, args: argparse.Namespace) -> int:
    from cartera.cli import contact_prefs

    return contact_prefs.run(node, args)


@dataclass(frozen=True)
class _Command:
    """A command: its line in ``--help``, what defines its arguments, and what runs it on the site's node (none for
    ``plugins``, which needs no site)."""

    help: str
    define: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Node, argparse.Namespace], int] | None


_COMMANDS: dict[str, _Command] = {
    "run": _Command("start the node (default command)", _define_run, _run),
    "check": _Command("validate config and reach every configured vendor", _define_nothing, _check),
    "plugins": _Command("list installed plugins per kind", _define_nothing, None),
    "import": _Command("load a creditor assignment file through the crm_sync plugin", _define_import, _import),
    "call": _Command("place one call through the compliance gate", _define_call, _call),
    "sms": _Command("send one text through the compliance gate", _define_sms, _sms),
    "sms-template": _Command("SMS templates of the site's portfolios", _define_sms_template, _sms_template),
    "sms-batch": _Command(
        "text a template to a portfolio's active accounts, each through the compliance gate",
        _define_sms_batch,
        _sms_batch,
    ),
    "explain": _Command("what the compliance gate decides for a contact, and why (audited)", _define_explain, _explain),
    "campaign": _Command("the campaign's list: the next accounts to call and why", _define_campaign, _campaign),
    "archive": _Command("run the recording archival job once", _define_archive, _archive),
    "recordings": _Command("find and fetch call recordings", _define_recordings, _recordings),
    "users": _Command("users of the supervisors' and agents' pages", _define_users, _users),
    "contact-prefs": _Command(
        "the debtor's requested contact hours, phone line types", _define_contact_prefs, _contact_prefs
    ),
}
