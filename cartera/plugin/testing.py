"""The conformance kits: a plugin's tests subclass its kind's suite; the plugin is right when the suite passes.

Needs pytest. See docs/plugins.md, "Certification".
"""

from cartera.core.testing.context import CapturingContext
from cartera.core.testing.crm_sync import CrmSyncConformance, Delivery, RejectedDelivery
from cartera.core.testing.dialer import DialerConformance
from cartera.core.testing.recording_store import RecordingFile, RecordingStoreConformance, make_recording_file
from cartera.core.testing.sms import SmsConformance

__all__ = [
    "CapturingContext",
    "CrmSyncConformance",
    "Delivery",
    "DialerConformance",
    "RecordingFile",
    "RecordingStoreConformance",
    "RejectedDelivery",
    "SmsConformance",
    "make_recording_file",
]
