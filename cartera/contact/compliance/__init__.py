"""The compliance engine: collections law as data (law packs), checked for every call and text.

:class:`ComplianceGate` decides; :mod:`cartera.contact.compliance.packs` holds the law;
:mod:`cartera.contact.compliance.history` loads what the store knows of a debtor's past contacts.
See docs/compliance.md.
"""

from cartera.contact.compliance.engine import ComplianceGate, Policy, PolicyError, RuleInfo, build_policy, validate
from cartera.contact.compliance.model import (
    Contact,
    DebtorHours,
    Decision,
    History,
    LineType,
    Purpose,
    Reason,
    Subject,
    Violation,
)

__all__ = [
    "ComplianceGate",
    "Contact",
    "DebtorHours",
    "Decision",
    "History",
    "LineType",
    "Policy",
    "PolicyError",
    "Purpose",
    "Reason",
    "RuleInfo",
    "Subject",
    "Violation",
    "build_policy",
    "validate",
]
