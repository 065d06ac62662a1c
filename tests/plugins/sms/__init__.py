"""Tests of the SMS plugins; helpers their node-level tests share."""

from __future__ import annotations

from cartera.core.store.schema import SmsRow
from cartera.node import Node


def sms_row(node: Node, message_id: int) -> SmsRow:
    """The stored row of message ``message_id``, detached from its session."""
    with node.db.session() as session:
        row = session.get_one(SmsRow, message_id)
        session.expunge(row)
        return row
