"""Settings of the Asterisk AMI dialer: where AMI is, how to dial, where recordings land, how to pace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints

from cartera.plugin import CODE_PATTERN, ConfigPath, DialRatio, PluginConfig, RingTimeout, format_template

#: One AMI header value: no line breaks (they would inject headers into the action).
AmiValue = Annotated[str, StringConstraints(min_length=1, pattern=r"^[^\r\n]+$")]
#: A sound Playback() plays: a name under Asterisk's sounds or an absolute path, without extension; no ',', '&' or
#: '|' (they would add files or options to the application's arguments).
SoundName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,200}$")]
#: A portfolio as sites.toml names it: ``CREDITOR/PORTFOLIO``.
PortfolioName = Annotated[str, StringConstraints(pattern=rf"^{CODE_PATTERN}/{CODE_PATTERN}$")]


class AsteriskAmiConfig(PluginConfig):
    host: AmiValue = Field(default="127.0.0.1", description="Host of Asterisk's manager interface (AMI).")
    port: int = Field(default=5038, ge=1, le=65535, description="AMI TCP port (manager.conf [general] port).")
    username: AmiValue = Field(description="AMI user (a section of manager.conf).")
    secret: SecretStr = Field(description='The AMI user\'s secret; write it as "${ENV_VAR}" in sites.toml.')
    queue: AmiValue = Field(
        description="The agents' queue (queues.conf): its members' status gives the agents available for pacing."
    )
    dial_ratio: DialRatio = Field(
        default=1.0, description="Calls in flight per available agent (predictive over-dialling)."
    )
    channel: Annotated[AmiValue, format_template("digits", "number")] = Field(
        default="PJSIP/{number}@carrier",
        description="Channel to originate: {number} is the E.164 number (+57...), {digits} the same without '+'.",
    )
    context: AmiValue = Field(
        default="agents", description="Dialplan context an answered call enters (it records and queues the call)."
    )
    agent_context: AmiValue = Field(
        default="agent",
        description="Dialplan context an answered call placed for one agent (a callback) enters instead: it records "
        "the call and dials ${CARTERA_AGENT}, that agent's queue member interface.",
    )
    exten: AmiValue = Field(default="s", description="Extension in 'context' (or 'agent_context') a call enters.")
    priority: int = Field(default=1, ge=1, description="Priority in 'context' an answered call enters.")
    caller_id: AmiValue | None = Field(
        default=None,
        description='Caller ID presented to debtors, e.g. "Cobranza" <6015550000>, unless the call sets one.',
    )
    ring_timeout_s: RingTimeout = Field(
        default=30.0, description="Seconds a call rings before it is given up as not answered (15 at least)."
    )
    abandon_after_s: int = Field(
        default=2,
        ge=1,
        le=60,
        description="Whole seconds an answered call waits in the queue for a free agent (CARTERA_ABANDON_AFTER, the "
        "Queue() timeout of the documented dialplan): then it hears the identification message, is hung up and "
        "ends 'abandoned'. 2 as 47 CFR 64.1200(a)(7) counts.",
    )
    identification_message: SoundName = Field(
        default="cartera/identification",
        description="The sound an abandoned call hears (CARTERA_MESSAGE, Playback's argument: a name under "
        "Asterisk's sounds or an absolute path, without extension): who calls, and a number to call back.",
    )
    portfolio_messages: dict[PortfolioName, SoundName] = Field(
        default_factory=dict,
        description='The identification message of a portfolio\'s calls instead, by "CREDITOR/PORTFOLIO".',
    )
    amd: bool = Field(
        default=False,
        description="Answering-machine detection (CARTERA_AMD=1: the documented dialplan runs AMD() on answer): a "
        "machine is hung up and ends 'machine', a person goes on to the queue.",
    )
    attempt_header: Annotated[str, StringConstraints(pattern=r"^(X-[A-Za-z0-9-]+)?$")] = Field(
        default="X-Cartera-Attempt",
        description="SIP header carrying the attempt id on PJSIP calls (the carrier's records can name it); "
        '"" sends none.',
    )
    spool_dir: ConfigPath = Field(
        default=Path("/var/spool/asterisk/monitor"),
        description="Directory where MixMonitor writes the recordings, as this node sees it (Asterisk's "
        "spool/monitor, or a mount of it): the calls' recordings are reported from it, those of a killed run's "
        "calls and those matching spool_patterns by a scan.",
    )
    spool_patterns: tuple[str, ...] = Field(
        default=(),
        description="Other files in spool_dir (and its folders) to report once finished, besides this site's "
        'calls\' recordings: e.g. ["*.wav"] for recordings made outside Cartera or before it; none by default.',
    )
    quiet_period_s: float = Field(
        default=5, ge=0, description="Seconds a file must stay unmodified before the scan takes it as finished."
    )
    spool_scan_s: float = Field(default=30, gt=0, le=3600, description="Seconds between two scans of spool_dir.")
    recording_name: Annotated[AmiValue, format_template("uniqueid")] = Field(
        default="{uniqueid}.wav",
        description="File name MixMonitor gives a call's recording in spool_dir ({uniqueid}: the channel's UNIQUEID).",
    )
    recording_wait_s: float = Field(
        default=10.0, ge=0, le=120, description="Seconds to wait after a hangup for the recording file to be complete."
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Seconds to connect and log in to AMI.")
    action_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Seconds to wait for an AMI response.")
    ping_interval_s: float = Field(
        default=5.0, gt=0, le=300, description="Seconds between Pings that prove the AMI connection alive."
    )
    ping_timeout_s: float = Field(
        default=3.0, gt=0, le=60, description="Seconds without a Pong after which the connection is dropped as dead."
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=600, description="Longest wait between reconnection attempts (backoff doubles up to it)."
    )
    max_message_bytes: int = Field(
        default=1 << 20,
        ge=1 << 16,
        le=1 << 26,
        description="Longest AMI message accepted; Asterisk sending a longer one is dropped as a broken connection.",
    )
    stop_timeout_s: float = Field(
        default=15.0, gt=0, le=300, description="Seconds stop() waits for the calls it hung up to be reported ended."
    )
