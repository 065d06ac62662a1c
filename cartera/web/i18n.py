"""The supervisors' pages in Spanish (default) and English: one message catalogue, no text in templates."""

from __future__ import annotations

from typing import Literal

Language = Literal["es", "en"]
LANGUAGES: tuple[Language, ...] = ("es", "en")

MESSAGES: dict[str, tuple[str, str]] = {  # key: (Spanish, English)
    "app.title": ("Grabaciones de llamadas", "Call recordings"),
    "nav.recordings": ("Grabaciones", "Recordings"),
    "nav.kpi": ("Indicadores", "KPIs"),
    "nav.audit": ("Auditoría", "Audit log"),
    "nav.logout": ("Salir", "Sign out"),
    "nav.language": ("English", "Español"),
    "login.title": ("Iniciar sesión", "Sign in"),
    "login.user": ("Usuario", "User"),
    "login.password": ("Contraseña", "Password"),
    "login.submit": ("Entrar", "Sign in"),
    "login.failed": ("Usuario o contraseña incorrectos.", "Wrong user name or password."),
    "login.throttled": (
        "Demasiados intentos fallidos. Intente de nuevo después de las {until} UTC.",
        "Too many failed attempts. Try again after {until} UTC.",
    ),
    "login.expired": ("Su sesión expiró. Inicie sesión de nuevo.", "Your session expired. Please sign in again."),
    "site.label": ("Sede", "Site"),
    "site.none": (
        "Su usuario no tiene acceso a la sede {site}: aquí no hay nada que pueda ver. "
        "Pida acceso a un administrador si lo necesita.",
        "Your user has no access to site {site}: there is nothing here you may see. "
        "Ask an administrator for access if you need it.",
    ),
    "grant.unresolved": (
        "Su acceso a la sede {site} nombra una cartera sin su acreedor y no se puede saber cuál es. "
        "Pida a un administrador que se la conceda de nuevo como ACREEDOR/CARTERA.",
        "Your access to site {site} names a portfolio without its creditor, so which one is not known. "
        "Ask an administrator to grant it again as CREDITOR/PORTFOLIO.",
    ),
    "search.title": ("Buscar grabaciones", "Search recordings"),
    "search.account": ("Cuenta", "Account"),
    "search.phone": ("Teléfono", "Phone"),
    "search.agent": ("Agente", "Agent"),
    "search.portfolio": ("Cartera", "Portfolio"),
    "search.outcome": ("Resultado", "Outcome"),
    "search.any": ("Todos", "Any"),
    "search.since": ("Desde", "From"),
    "search.until": ("Hasta", "To"),
    "search.submit": ("Buscar", "Search"),
    "search.none": ("Ninguna grabación coincide.", "No recordings match."),
    "search.page": ("Página {page}", "Page {page}"),
    "search.previous": ("Anterior", "Previous"),
    "search.next": ("Siguiente", "Next"),
    "col.id": ("Id", "Id"),
    "col.started": ("Inicio", "Started"),
    "col.duration": ("Duración", "Duration"),
    "col.state": ("Archivo", "Archival"),
    "col.actions": ("Acciones", "Actions"),
    "action.play": ("Escuchar", "Play"),
    "action.download": ("Descargar", "Download"),
    "player.title": ("Grabación {id}", "Recording {id}"),
    "player.sha256": ("SHA-256", "SHA-256"),
    "player.audited": (
        "Cada reproducción y descarga queda registrada con su usuario.",
        "Every play and download is recorded with your user name.",
    ),
    "player.unavailable": (
        "Esta grabación aún no está archivada y verificada ({state}).",
        "This recording is not archived and verified yet ({state}).",
    ),
    "state.found": ("pendiente", "pending"),
    "state.failed": ("reintentando", "retrying"),
    "state.verified": ("archivada", "archived"),
    "state.missing": ("perdida", "missing"),
    "state.purged": ("eliminada", "purged"),
    "outcome.answered": ("contestada", "answered"),
    "outcome.busy": ("ocupado", "busy"),
    "outcome.no_answer": ("sin respuesta", "no answer"),
    "outcome.rejected": ("rechazada", "rejected"),
    "outcome.invalid_number": ("número inválido", "invalid number"),
    "outcome.congestion": ("congestión", "congestion"),
    "outcome.failed": ("fallida", "failed"),
    "outcome.cancelled": ("cancelada", "cancelled"),
    "outcome.unknown": ("fin desconocido", "end unknown"),
    "kpi.title": ("Indicadores por cartera y día", "KPIs per portfolio and day"),
    "kpi.day": ("Día", "Day"),
    "kpi.attempts": ("Intentos", "Attempts"),
    "kpi.contacts": ("Contactos", "Contacts"),
    "kpi.contact_rate": ("Tasa de contacto", "Contact rate"),
    "kpi.rpc": ("Contactos titulares", "Right-party contacts"),
    "kpi.promises": ("Promesas de pago", "Promises to pay"),
    "kpi.kept": ("Promesas cumplidas", "Promises kept"),
    "kpi.recovered": ("Monto recuperado", "Amount recovered"),
    "kpi.chart": ("Intentos y contactos por día", "Attempts and contacts per day"),
    "kpi.none": ("Aún no hay llamadas en las carteras que puede ver.", "No calls yet in the portfolios you may see."),
    "kpi.note": (
        "Contacto: llamada contestada. Titular: el agente habló con el deudor. Cumplida: un pago registrado "
        "en la cuenta entre la promesa y su fecha. Los pagos llegan de los acreedores y pueden faltar.",
        "Contact: an answered call. Right party: the agent spoke with the debtor. Kept: a payment recorded on "
        "the account between the promise and its due date. Payments come from creditors and may be missing.",
    ),
    "audit.title": ("Registro de auditoría", "Audit log"),
    "audit.at": ("Fecha (UTC)", "At (UTC)"),
    "audit.actor": ("Usuario", "Actor"),
    "audit.action": ("Acción", "Action"),
    "audit.subject": ("Objeto", "Subject"),
    "audit.details": ("Detalle", "Details"),
    "audit.all": ("Todas las acciones de grabaciones y acceso", "All recording and access actions"),
    "error.title": ("No se pudo completar", "Could not complete"),
    "error.400": ("La solicitud no es válida.", "The request is not valid."),
    "error.403": ("No tiene permiso para ver esto.", "You are not allowed to see this."),
    "error.404": ("No existe o no está a su alcance.", "It does not exist or is not within your reach."),
    "error.405": ("Método no permitido.", "Method not allowed."),
    "error.409": ("No disponible todavía.", "Not available yet."),
    "error.413": ("Solicitud demasiado grande.", "Request too large."),
    "error.416": ("Rango de bytes no válido.", "Invalid byte range."),
    "error.422": ("Algún campo no es válido.", "A field is not valid."),
    "error.429": ("Demasiados intentos.", "Too many attempts."),
    "error.csrf": (
        "El formulario caducó o no viene de esta página. Recargue e intente de nuevo.",
        "The form expired or does not come from this page. Reload and try again.",
    ),
    "error.503": (
        "Demasiadas solicitudes. Intente de nuevo en unos segundos.",
        "Too busy. Try again in a few seconds.",
    ),
    "error.500": ("Error interno. El equipo técnico fue notificado.", "Internal error. IT has been notified."),
    "error.502": (
        "El almacén de grabaciones no respondió bien. Intente más tarde.",
        "The recording store did not answer properly. Try again later.",
    ),
    "error.back": ("Volver", "Back"),
}


def translate(language: Language, key: str, **values: object) -> str:
    """The message ``key`` in ``language``; unknown keys come back as themselves (visible, not fatal)."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[LANGUAGES.index(language)]
    return text.format(**values) if values else text


def number(language: Language, value: object, decimals: int = 0) -> str:
    """``value`` with thousands separators in the language's way: 1.234,50 (es) or 1,234.50 (en)."""
    text = f"{value:,.{decimals}f}"
    return text.translate(str.maketrans(",.", ".,")) if language == "es" else text
