"""The ``[sites.X.workspace]`` section: promise and callback limits, wrap-up limits, and per portfolio
(``[sites.X.workspace.portfolios."CREDITOR/PORTFOLIO"]`` or ``."PORTFOLIO"``) its own disposition codes, limits
and script.
Nothing configured: :data:`~cartera.workspace.dispositions.DEFAULT_CODES` and the defaults below."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cartera.workspace.dispositions import DEFAULT_CODES, SYSTEM_CODES, CodeSpec, Flag


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CodeSetting(_Section):
    """One disposition code as written in ``sites.toml``."""

    code: str
    label_es: str = Field(min_length=1, max_length=80)
    label_en: str = Field(min_length=1, max_length=80)
    flags: tuple[Flag, ...] = ()

    def spec(self) -> CodeSpec:
        return CodeSpec(self.code, self.label_es, self.label_en, frozenset(self.flags))


def _codes(settings: tuple[CodeSetting, ...] | None) -> tuple[CodeSpec, ...] | None:
    """The specs of a configured list, checked: each code valid (:class:`CodeSpec`), once, none a system code."""
    if settings is None:
        return None
    if not settings:
        raise ValueError("an empty code list leaves agents nothing to record; remove 'codes' for the defaults")
    seen: set[str] = {spec.code for spec in SYSTEM_CODES}
    specs = []
    for position, setting in enumerate(settings):
        spec = setting.spec()
        if spec.code in seen:
            raise ValueError(f"codes[{position}]: code {spec.code!r} is listed twice or is a system code")
        seen.add(spec.code)
        specs.append(spec)
    return tuple(specs)


class PortfolioWorkspace(_Section):
    """One portfolio's codes and limits, where they differ from the site's."""

    codes: tuple[CodeSetting, ...] | None = None
    promise_horizon_days: int | None = Field(default=None, ge=1, le=3660)
    promise_grace_days: int | None = Field(default=None, ge=0, le=60)
    max_instalments: int | None = Field(default=None, ge=1, le=120)
    #: the script the agent's screen shows once the right party is confirmed (default: the page's generic one)
    script: str | None = Field(default=None, min_length=1, max_length=4000)

    @field_validator("codes")
    @classmethod
    def _valid_codes(cls, value: tuple[CodeSetting, ...] | None) -> tuple[CodeSetting, ...] | None:
        _codes(value)
        return value


@dataclass(frozen=True)
class PortfolioRules:
    """What applies to one portfolio's dispositions, the site's defaults filled in."""

    codes: tuple[CodeSpec, ...]  #: offered to agents, in order
    promise_horizon_days: int  #: a promise's (last) date is at most this many days after today
    promise_grace_days: int  #: a payment this many days late still keeps the promise
    max_instalments: int
    script: str | None = None  #: the portfolio's own script; ``None``: the page's generic text

    def code(self, code: str) -> CodeSpec | None:
        """The spec of ``code``: one of the portfolio's, or a system code; ``None`` when unknown."""
        return next((spec for spec in self.codes + SYSTEM_CODES if spec.code == code), None)


class IntegrationAccess(_Section):
    """One integration of the workspace API (a centre's own agent desktop or CRM): its bearer token."""

    token: SecretStr = Field(
        min_length=24, description='The bearer token it sends (24+ characters); write it as "${ENV_VAR}".'
    )


class WorkspaceConfig(_Section):
    """The agents' workspace of a site."""

    promise_horizon_days: int = Field(default=60, ge=1, le=3660)
    promise_grace_days: int = Field(default=3, ge=0, le=60)
    max_instalments: int = Field(default=12, ge=1, le=120)
    #: a callback for its agent alone is offered to every agent this long after its time
    callback_release_minutes: float = Field(default=15, ge=0, le=24 * 60)
    #: an agent in wrap-up longer than this: the call is dispositioned ``wrap_up_timeout``, the agent paused
    wrap_up_seconds: float = Field(default=120, gt=0, le=3600)
    #: an agent's page gone (browser closed) longer than this mid-call: dispositioned ``browser_closed``
    gone_seconds: float = Field(default=30, gt=0, le=3600)
    #: the agent's own disposition saved this long after the call was dispositioned ``wrap_up_timeout`` or
    #: ``browser_closed`` replaces that code (0: never)
    late_disposition_minutes: float = Field(default=30, ge=0, le=24 * 60)
    #: preview mode: how long an account offered to an agent is held for it alone; then the agent is paused
    offer_hold_seconds: float = Field(default=120, gt=0, le=3600)
    #: preview mode: how long an account an agent skipped (or could not call) is not offered to that agent again
    skip_rest_minutes: float = Field(default=60, ge=0, le=24 * 60)
    codes: tuple[CodeSetting, ...] | None = None  #: the site's list (default: the built-in one)
    portfolios: dict[str, PortfolioWorkspace] = {}
    #: the workspace API's integrations by name (events and dispositions; docs/workspace-api.openapi.json)
    integrations: dict[str, IntegrationAccess] = {}

    @field_validator("codes")
    @classmethod
    def _valid_codes(cls, value: tuple[CodeSetting, ...] | None) -> tuple[CodeSetting, ...] | None:
        _codes(value)
        return value

    def rules(self, creditor: str, portfolio: str) -> PortfolioRules:
        """The rules of portfolio ``creditor``/``portfolio``: its own section ("CREDITOR/PORTFOLIO", else
        "PORTFOLIO"), the site's values for what it leaves out."""
        own = self.portfolios.get(f"{creditor}/{portfolio}") or self.portfolios.get(portfolio) or PortfolioWorkspace()
        codes = _codes(own.codes) or _codes(self.codes) or DEFAULT_CODES
        return PortfolioRules(
            codes=codes,
            promise_horizon_days=own.promise_horizon_days or self.promise_horizon_days,
            promise_grace_days=self.promise_grace_days if own.promise_grace_days is None else own.promise_grace_days,
            max_instalments=own.max_instalments or self.max_instalments,
            script=own.script,
        )
