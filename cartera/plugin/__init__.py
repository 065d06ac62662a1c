"""The public API for vendor plugins: the one module a plugin imports (its tests add :mod:`cartera.plugin.testing`).

Everything else under ``cartera`` is private to the node and may change without notice. See docs/plugins.md.

- **Hooks:** ``hookimpl`` marks a plugin's registration hooks (``cartera_register_dialers`` and the other
  ``cartera_register_*`` hooks) and observers; the specifications live in :mod:`cartera.core.hookspecs`.
- **Base classes** an adapter subclasses, one per kind, with the registries it is registered in, and the
  **capabilities** it declares (``DialerCapabilities`` & co.).
- **Models** passed across the contract, and **errors** an adapter raises.
- **Helpers** for what several vendors need: dial strings and pacing, durable files, checksums, SMS segment
  counting, secret masking, creditor CSV files, wall-clock deadlines on requests to a peer.
"""

from cartera.contact.phones import InvalidPhone, normalize, time_zones
from cartera.contact.smstext import GSM7, UCS2, segment_count, sms_encoding
from cartera.core.adapters import (
    Adapter,
    AdapterCapabilities,
    ConfigPath,
    CrmSync,
    CrmSyncCapabilities,
    Dialer,
    DialerCapabilities,
    DialRatio,
    FileMode,
    PluginConfig,
    PluginContext,
    RecordingStore,
    RecordingStoreCapabilities,
    RingTimeout,
    SmsGateway,
    WritableDir,
    dial_slots,
    dial_string,
    format_template,
    recording_key_problem,
)
from cartera.core.checksums import CHUNK_SIZE, copy_with_checksums, file_checksums
from cartera.core.clock import Clock, SystemClock
from cartera.core.control_characters import unkeepable
from cartera.core.credentials import secret_settings
from cartera.core.deadlines import DeadlineWatchdog, RequestDeadline
from cartera.core.durable import LineAppender, NotARegularFile, fsync_dir, open_regular, write_atomically
from cartera.core.errors import (
    CarteraError,
    IntegrityError,
    ObjectLocked,
    ObjectNotFound,
    SettingError,
    StoreUnavailable,
    UnknownAgent,
    Unsupported,
)
from cartera.core.hookspecs import hookimpl
from cartera.core.logs import FirstTime, event
from cartera.core.models import (
    AGENT_MAX,
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    PAYMENT_REF_MAX,
    Activity,
    ActivityKind,
    AgentConnected,
    AssignmentAction,
    AssignmentBatch,
    AssignmentRow,
    CallOutcome,
    CallRequest,
    CallResult,
    Channel,
    CheckResult,
    Checksums,
    DeliveryReport,
    DeliveryScope,
    Disposition,
    DispositionCode,
    FileRejected,
    InboundSms,
    Recording,
    RowError,
    Seat,
    SeatState,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    StoredObject,
    UnfinishedCall,
)
from cartera.core.redaction import MASK, register_secret
from cartera.core.registry import AdapterCatalog, AdapterRegistry
from cartera.portfolio.files.config import (
    DEFAULT_ACTIONS,
    DEFAULT_EXPORT_COLUMNS,
    EXPORT_FIELDS,
    ColumnsConfig,
    CsvFormatConfig,
    InboxFilesConfig,
)
from cartera.portfolio.files.names import is_keepable_name, shown_name
from cartera.portfolio.files.reader import (
    AssignmentReader,
    FileIdentity,
    FileOverMaxBytes,
    read_identity,
    read_local,
)
from cartera.portfolio.files.set_aside import (
    SET_ASIDE_FILE,
    SetAsideFile,
    SetAsideFiles,
    SetAsideKind,
    local_identity,
)
from cartera.portfolio.files.settle import DEFAULT_SETTLE_SECONDS, Settling
from cartera.portfolio.files.values import AmbiguousColumn, find_column, header_key
from cartera.portfolio.files.writer import (
    activities_writer,
    export_name,
    rejection_name,
    rejection_names,
    rejections_writer,
)
from cartera.portfolio.identity import CODE_PATTERN
from cartera.web.app import PLUGIN_PREFIX
from cartera.web.health import local_request
from cartera.web.nul_guard import decodes_query

__all__ = [
    "AGENT_MAX",
    "AMOUNT_DECIMAL_PLACES",
    "AMOUNT_MAX_DIGITS",
    "CHUNK_SIZE",
    "CODE_PATTERN",
    "DEFAULT_ACTIONS",
    "DEFAULT_EXPORT_COLUMNS",
    "DEFAULT_SETTLE_SECONDS",
    "EXPORT_FIELDS",
    "GSM7",
    "MASK",
    "PAYMENT_REF_MAX",
    "PLUGIN_PREFIX",
    "SET_ASIDE_FILE",
    "UCS2",
    "Activity",
    "ActivityKind",
    "Adapter",
    "AdapterCapabilities",
    "AdapterCatalog",
    "AdapterRegistry",
    "AgentConnected",
    "AmbiguousColumn",
    "AssignmentAction",
    "AssignmentBatch",
    "AssignmentReader",
    "AssignmentRow",
    "CallOutcome",
    "CallRequest",
    "CallResult",
    "CarteraError",
    "Channel",
    "CheckResult",
    "Checksums",
    "Clock",
    "ColumnsConfig",
    "ConfigPath",
    "CrmSync",
    "CrmSyncCapabilities",
    "CsvFormatConfig",
    "DeadlineWatchdog",
    "DeliveryReport",
    "DeliveryScope",
    "DialRatio",
    "Dialer",
    "DialerCapabilities",
    "Disposition",
    "DispositionCode",
    "FileIdentity",
    "FileMode",
    "FileOverMaxBytes",
    "FileRejected",
    "FirstTime",
    "InboundSms",
    "InboxFilesConfig",
    "IntegrityError",
    "InvalidPhone",
    "LineAppender",
    "NotARegularFile",
    "ObjectLocked",
    "ObjectNotFound",
    "PluginConfig",
    "PluginContext",
    "Recording",
    "RecordingStore",
    "RecordingStoreCapabilities",
    "RequestDeadline",
    "RingTimeout",
    "RowError",
    "Seat",
    "SeatState",
    "SetAsideFile",
    "SetAsideFiles",
    "SetAsideKind",
    "SettingError",
    "Settling",
    "SmsGateway",
    "SmsMessage",
    "SmsState",
    "SmsSubmitResult",
    "StoreUnavailable",
    "StoredObject",
    "SystemClock",
    "UnfinishedCall",
    "UnknownAgent",
    "Unsupported",
    "WritableDir",
    "activities_writer",
    "copy_with_checksums",
    "decodes_query",
    "dial_slots",
    "dial_string",
    "event",
    "export_name",
    "file_checksums",
    "find_column",
    "format_template",
    "fsync_dir",
    "header_key",
    "hookimpl",
    "is_keepable_name",
    "local_identity",
    "local_request",
    "normalize",
    "open_regular",
    "read_identity",
    "read_local",
    "recording_key_problem",
    "register_secret",
    "rejection_name",
    "rejection_names",
    "rejections_writer",
    "secret_settings",
    "segment_count",
    "shown_name",
    "sms_encoding",
    "time_zones",
    "unkeepable",
    "write_atomically",
]
