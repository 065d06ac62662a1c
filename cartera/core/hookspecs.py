"""Hook specifications of Cartera, the whole plugin contract.

Two groups:

* **Registry hooks** (one per kind): a plugin adds its adapter classes by name; a site then picks exactly
  one adapter per kind in ``sites.toml``. They never fire per call.
* **Observer hooks**: broadcast to every plugin after core has committed something. They must be fast and
  must not raise; an observer that raises is logged and the others still run.

Every hook returns ``None`` and is *not* ``firstresult``: all implementations are called. Core calls them
only through :class:`cartera.core.hooks.Hooks`, never through ``pm.hook`` directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from cartera.core.adapters import CrmSync, Dialer, RecordingStore, SmsGateway
    from cartera.core.models import Activity, CallRequest, CallResult, DeliveryReport, StoredObject
    from cartera.core.registry import AdapterRegistry

PROJECT = "cartera"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- registry hooks: one adapter per kind and site ------------------------------------------------


@hookspec
def cartera_register_dialers(register: AdapterRegistry[Dialer[Any]]) -> None:
    """Add dialer adapter classes.

    When: once, while the plugin manager starts (every command, before ``sites.toml`` is validated).

    :param register: call ``register.add(MyDialer)``; ``MyDialer.name`` is what ``sites.toml`` names
        under ``[sites.NAME.dialer] plugin = ...``. A name already taken is a start-up error.
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_register_recording_stores(register: AdapterRegistry[RecordingStore[Any]]) -> None:
    """Add recording store adapter classes.

    When: once, while the plugin manager starts.

    :param register: call ``register.add(MyStore)``; selected by ``[sites.NAME.recording] plugin = ...``.
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_register_sms_gateways(register: AdapterRegistry[SmsGateway[Any]]) -> None:
    """Add SMS gateway adapter classes.

    When: once, while the plugin manager starts.

    :param register: call ``register.add(MyGateway)``; selected by ``[sites.NAME.sms] plugin = ...``.
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_register_crm_syncs(register: AdapterRegistry[CrmSync[Any]]) -> None:
    """Add creditor-data exchange (crm_sync) adapter classes.

    When: once, while the plugin manager starts.

    :param register: call ``register.add(MySync)``; selected by ``[sites.NAME.crm_sync] plugin = ...``.
    :return: nothing; all implementations are called (not firstresult).
    """


# --- observer hooks: broadcast after core committed the fact ---------------------------------------


@hookspec
def cartera_call_finished(site: str, request: CallRequest, result: CallResult) -> None:
    """A call attempt ended and its outcome is stored.

    When: after the dialer reported the call's end and core committed the attempt's outcome.

    :param site: the site's name in ``sites.toml``.
    :param request: the request the compliance gate allowed and the dialer received.
    :param result: the outcome as the dialer reported it (``raw_cause`` keeps the vendor's cause).
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_recording_archived(site: str, recording_id: int, stored: StoredObject) -> None:
    """A recording reached the site's store and was verified there.

    When: after the archival job verified the stored object and committed the catalog row.

    :param site: the site's name.
    :param recording_id: the catalog id (``recordings get ID``).
    :param stored: the store's description of the object (key, size, sha256, location).
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_sms_delivery(site: str, message_id: int, report: DeliveryReport) -> None:
    """A delivery report changed an SMS's state.

    When: after the gateway's report was matched to a message and its new state committed.

    :param site: the site's name.
    :param message_id: our id of the message.
    :param report: the report as the gateway sent it.
    :return: nothing; all implementations are called (not firstresult).
    """


@hookspec
def cartera_activity_recorded(site: str, activity: Activity) -> None:
    """Work on an account was recorded for the creditor's activity export.

    When: after the activity row (call attempt, SMS, promise to pay, payment) was committed; a call attempt not
        exported yet is reported again, with its seq, when an agent's late disposition changed its outcome.

    :param site: the site's name.
    :param activity: the activity with its export sequence number.
    :return: nothing; all implementations are called (not firstresult).
    """
