"""``run_site.py contact-prefs``: an operator records the hours a debtor asked for and what each number is."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cartera.contact.compliance import ComplianceGate, packs
from cartera.contact.compliance.model import LineType, Subject
from cartera.contact.compliance.prefs_service import AccountPrefs
from cartera.contact.phones import InvalidPhone, normalize
from cartera.core.audit import os_user
from cartera.core.errors import UsageError
from cartera.core.models import Channel

if TYPE_CHECKING:
    from cartera.node import Node


def define(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``run_site.py contact-prefs``."""
    sub = parser.add_subparsers(dest="prefs_command", metavar="SUBCOMMAND", required=True)
    show = sub.add_parser("show", help="print an account's requested hours and its numbers' line types")
    show.add_argument("--account", required=True)
    hours = sub.add_parser("hours", help="record (or clear) the local hours the debtor asked to be contacted in")
    hours.add_argument("--account", required=True)
    what = hours.add_mutually_exclusive_group(required=True)
    what.add_argument("--hours", action="append", metavar="DAYS=HH:MM-HH:MM", help="e.g. mon-fri=18:00-20:00")
    what.add_argument("--clear", action="store_true", help="remove the request")
    hours.add_argument(
        "--instrument", help="the debtor's request outside the contract (recording id, letter...): Ley 2300 art. 3"
    )
    line = sub.add_parser("line", help="state what a number of the account's debtor is (940 CMR 7.04(1)(f))")
    line.add_argument("--account", required=True)
    line.add_argument("--phone", required=True)
    line.add_argument("--type", required=True, choices=[kind.value for kind in LineType])


def run(node: Node, args: argparse.Namespace) -> int:
    service = node.contact_prefs
    account = service.show(args.account)  # refused first when it names no account of the site
    if args.prefs_command == "hours":
        try:
            wanted = None if args.clear else packs.parse_hours(args.hours)
        except ValueError as exc:
            raise UsageError(f"--hours: {exc}") from None
        stored = service.set_hours(args.account, wanted, instrument=args.instrument, actor=os_user())
        print(f"{args.account}: requested hours " + (stored.describe() if stored else "cleared"))
        if wanted is not None:
            print(_effect(node.gate, account, wanted, bool(stored and stored.instrument)))
    elif args.prefs_command == "line":
        try:
            phone = normalize(args.phone, account.country)
        except InvalidPhone as exc:
            raise UsageError(f"--phone: {exc}") from None
        kind = LineType(args.type)
        service.set_line_type(args.account, phone, kind, actor=os_user())
        print(f"{args.account}: {phone} is {kind}")
    else:
        print(f"{account.ref}: requested hours " + (account.hours.describe() if account.hours else "none"))
        for phone, line in account.lines:
            print(f"  {phone}: {line}")
    return 0


def _effect(gate: ComplianceGate, account: AccountPrefs, hours: dict[str, str], instrument: bool) -> str:
    """What the request does under the account's law pack: replace the law's hours, or only narrow them."""
    policy = gate.policy_for(Subject(Channel.CALL, "", portfolio=account.portfolio, country=account.country))
    if policy is None:
        return "no law pack applies to this account: no contact at all"
    week = packs.week_hours(hours)
    laws = [rule for rule in policy.pack.rules if isinstance(rule, packs.WindowRule)]
    replaced = [rule for rule in laws if rule.debtor_request == "replace"]
    if replaced and instrument:
        cited = "; ".join(f"{r.id} ({r.source.law}, {r.source.article})" for r in replaced if r.source)
        return f"law pack {policy.pack.id}: the request replaces the law's hours (not its holidays): {cited}"
    wider = next((f"{p} ({r.id})" for r in laws if (p := packs.wider_hours(week, r.week))), None)
    if wider is None:
        return f"law pack {policy.pack.id}: the request narrows the law's hours"
    if replaced:
        why = "record the request's --instrument (outside the contract) for it to replace the law's hours"
    else:
        why = "the law does not let a debtor's request widen its hours"
    return f"law pack {policy.pack.id}: the request only narrows the law's hours; {wider}: {why}"
