"""SMS templates per portfolio, filled with an account's fields in a sandboxed Jinja2 environment.

Templates come from ``sites.toml`` (``[sites.NAME.sms_templates.PORTFOLIO]``, one key per template name), else
from :data:`BUILT_IN`; a template sees only the plain values of :data:`TEMPLATE_FIELDS` (strings, numbers and
dates, never ORM objects; the ``promise`` template also :data:`PROMISE_FIELDS`), the sandbox refuses attribute
access to Python internals, and an unknown name is an error, never an empty string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cartera.contact.smstext import segment_count, sms_encoding
from cartera.core.control_characters import control_problem
from cartera.core.errors import CarteraError
from cartera.core.store.schema import Account

#: The names a template may use, with what they hold.
TEMPLATE_FIELDS: dict[str, str] = {
    "account": "the account reference (BCO-000105)",
    "name": "the debtor's full name",
    "first_name": "the first word of the debtor's name",
    "balance": "the balance, a number: format it with the money filter ({{ balance | money }})",
    "currency": "the balance's ISO 4217 currency (COP)",
    "creditor": "the creditor's code",
    "portfolio": "the portfolio's code",
}
#: What the ``promise`` template sees besides :data:`TEMPLATE_FIELDS`.
PROMISE_FIELDS: dict[str, str] = {
    "promised_amount": "the amount promised, a number ({{ promised_amount | money }})",
    "promised_date": "the day the debtor promised to pay by, a date ({{ promised_date | day }}: 30/11/2026)",
}
#: Templates for every portfolio without one of the same name.
DEFAULT_PORTFOLIO = "default"
REMINDER = "reminder"
#: The confirmation texted after a call ends with a promise to pay.
PROMISE = "promise"
#: Templates a site has without configuring them; its own (default or per portfolio) win.
BUILT_IN: dict[str, str] = {
    PROMISE: (
        "Gracias por su compromiso de pago de ${{ promised_amount | money(0) }} "
        "para el {{ promised_date | day }}. Ref. {{ account }}."
    ),
}


class TemplateProblem(CarteraError):
    """A template cannot be rendered for an account (it names a field the account lacks, or a bad value)."""


def money(value: Any, decimals: int | None = None) -> str:
    """``1234567.5`` → ``1.234.567,50``; whole amounts without decimals (``1.234.567``), as debtors read them;
    ``decimals`` rounds to that many places instead (``money(0)``: ``1.234.568``)."""
    amount = Decimal(str(value))
    if decimals is None:
        decimals = 0 if amount == amount.to_integral_value() else 2
    text = f"{amount:,.{decimals}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def day(value: date) -> str:
    """``2026-11-30`` → ``30/11/2026``, as debtors read dates."""
    return f"{value:%d/%m/%Y}"


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters["money"] = money
    env.filters["day"] = day
    return env


_ENV = _environment()


def _used_fields(source: str) -> set[str]:
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error at line {exc.lineno} of the template: {exc.message}") from None
    return meta.find_undeclared_variables(tree)


def check_template(source: str) -> str:
    """Config validator: the template parses and uses only :data:`TEMPLATE_FIELDS` (or :data:`PROMISE_FIELDS`,
    which :func:`check_template_set` keeps to the ``promise`` template)."""
    unknown = sorted(_used_fields(source) - set(TEMPLATE_FIELDS) - set(PROMISE_FIELDS))
    if unknown:
        raise ValueError(f"unknown template field {unknown[0]!r} (use {', '.join(TEMPLATE_FIELDS)})")
    if not source.strip():
        raise ValueError("the template is empty")
    return source


def check_template_set(templates: dict[str, str]) -> dict[str, str]:
    """Config validator of one portfolio's templates: only the ``promise`` template sees :data:`PROMISE_FIELDS`."""
    for name, source in templates.items():
        misplaced = sorted(_used_fields(source) & set(PROMISE_FIELDS)) if name != PROMISE else []
        if misplaced:
            raise ValueError(f"template {name!r}: {misplaced[0]!r} is a field of the {PROMISE!r} template only")
    return templates


#: A template's source in a config model, checked when the config loads.
TemplateSource = Annotated[str, AfterValidator(check_template)]
#: One portfolio's templates by name in a config model, checked when the config loads.
TemplateSet = Annotated[dict[str, TemplateSource], AfterValidator(check_template_set)]


class SmsPricing(BaseModel):
    """What the site's gateway charges per SMS segment (a concatenated text costs one per part)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_per_segment: Decimal = Field(default=Decimal(0), ge=0, description="price of one SMS segment")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the price")


@dataclass(frozen=True, slots=True)
class RenderedSms:
    """A template filled for one account, with what sending it costs."""

    template: str
    account_ref: str
    text: str
    encoding: str
    segments: int
    cost: Decimal
    currency: str


def fields_of(account: Account) -> dict[str, Any]:
    """The values a template sees for ``account`` (its portfolio, creditor and debtor loaded)."""
    name = account.debtor.name.strip()
    return {
        "account": account.ref,
        "name": name,
        "first_name": name.split()[0] if name else "",
        "balance": account.balance,
        "currency": account.currency,
        "creditor": account.portfolio.creditor.code,
        "portfolio": account.portfolio.code,
    }


class SmsTemplates:
    """The site's templates by portfolio (``CREDITOR/PORTFOLIO``, ``PORTFOLIO`` or ``default``) and name."""

    def __init__(self, sources: dict[str, dict[str, str]], pricing: SmsPricing) -> None:
        self.pricing = pricing
        self._sources = sources

    def names(self) -> list[str]:
        return sorted({name for templates in self._sources.values() for name in templates})

    def source(self, name: str, creditor: str, portfolio: str) -> str | None:
        """The template ``name`` for a portfolio: its own, else the default one, else the built-in one, else
        ``None``."""
        for key in (f"{creditor}/{portfolio}", portfolio, DEFAULT_PORTFOLIO):
            found = self._sources.get(key, {}).get(name)
            if found is not None:
                return found
        return BUILT_IN.get(name)

    def render(self, name: str, account: Account, **extra: Any) -> RenderedSms | None:
        """Fill template ``name`` of the account's portfolio with its fields and ``extra`` (the promise template's
        :data:`PROMISE_FIELDS`); ``None`` when there is no such template."""
        source = self.source(name, account.portfolio.creditor.code, account.portfolio.code)
        if source is None:
            return None
        fields = fields_of(account)
        for field, value in fields.items():
            problem = control_problem(value) if isinstance(value, str) else None
            if problem is not None:  # stored before the import refused them: never sent, never shown raw
                raise TemplateProblem(f"template {name!r} for account {account.ref!r}: field {field!r}: {problem}")
        try:
            text = _ENV.from_string(source).render(fields | extra).strip()
        except TemplateError as exc:
            raise TemplateProblem(f"template {name!r} for account {account.ref!r}: {exc}") from None
        return self._describe(name, account.ref, text)

    def _describe(self, name: str, account_ref: str, text: str) -> RenderedSms:
        segments = segment_count(text)
        return RenderedSms(
            template=name,
            account_ref=account_ref,
            text=text,
            encoding=sms_encoding(text),
            segments=segments,
            cost=self.pricing.cost_per_segment * segments,
            currency=self.pricing.currency,
        )
