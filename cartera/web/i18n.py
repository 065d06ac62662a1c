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
    "player.elsewhere": (
        "Disponible en el nodo de la sede {site}: este nodo no conoce su almacén de grabaciones.",
        "Available at site {site}'s node: this node does not know its recording store.",
    ),
    "state.found": ("pendiente", "pending"),
    "state.failed": ("reintentando", "retrying"),
    "state.verified": ("archivada", "archived"),
    "state.missing": ("perdida", "missing"),
    "state.purged": ("eliminada", "purged"),
    "outcome.answered": ("contestada", "answered"),
    "outcome.abandoned": ("abandonada (sin agente a tiempo)", "abandoned (no agent in time)"),
    "outcome.machine": ("contestador automático", "answering machine"),
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
    "kpi.abandoned": ("Abandonadas (tasa)", "Abandoned (rate)"),
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
    "nav.agent": ("Mi puesto", "My desk"),
    "nav.wallboard": ("Tablero en vivo", "Live wallboard"),
    "agent.title": ("Puesto del agente", "Agent desk"),
    "agent.state.ready": ("Disponible", "Ready"),
    "agent.state.on_call": ("En llamada", "On a call"),
    "agent.state.wrap_up": ("Tipificando", "Wrap-up"),
    "agent.state.paused": ("En pausa", "Paused"),
    "agent.ready": ("Disponible (R)", "Ready (R)"),
    "agent.pause": ("Pausa (P)", "Pause (P)"),
    "agent.pause_reason": ("Motivo de la pausa", "Pause reason"),
    "agent.pause.break": ("Descanso", "Break"),
    "agent.pause.lunch": ("Almuerzo", "Lunch"),
    "agent.pause.training": ("Capacitación", "Training"),
    "agent.pause.meeting": ("Reunión", "Meeting"),
    "agent.waiting": ("Esperando la próxima llamada…", "Waiting for the next call…"),
    "agent.ask_for": ("Pregunte por", "Ask for"),
    "agent.no_account": ("Llamada sin cuenta asociada", "A call of no account"),
    "agent.not_visible": (
        "Esta llamada no pertenece a sus carteras: no se muestran datos. Tipifíquela y avise a su supervisor.",
        "This call is not of your portfolios: no data is shown. Disposition it and tell your supervisor.",
    ),
    "agent.confirm": ("Confirmé que hablo con el titular (C)", "I confirmed I am speaking with the debtor (C)"),
    "agent.hidden": (
        "La deuda no se muestra hasta confirmar al titular: no la revele a terceros.",
        "The debt stays hidden until you confirm the debtor: never disclose it to anyone else.",
    ),
    "agent.mini_miranda": (
        "Lea al deudor: «Esta es una comunicación de un cobrador de deudas. Es un intento de cobrar una deuda y "
        "cualquier información obtenida se usará para ese propósito.»",
        "Read to the debtor: \u201cThis is a communication from a debt collector. This is an attempt to collect a "
        "debt and any information obtained will be used for that purpose.\u201d",
    ),
    "agent.preview": ("Llamar a una cuenta (/)", "Call an account (/)"),
    "agent.call": ("Llamar", "Call"),
    "agent.calling": ("Llamando…", "Calling…"),
    "agent.offer.title": ("Próxima cuenta", "Next account"),
    "agent.offer.callback": ("El deudor pidió que lo llamaran a esta hora.", "The debtor asked to be called back now."),
    "agent.offer.call": ("Llamar (L)", "Call (L)"),
    "agent.offer.skip": ("Saltar (S)", "Skip (S)"),
    "agent.offer.skip_reason": ("Motivo para saltar", "Reason to skip"),
    "agent.skip.needs_review": ("Revisar antes de llamar", "Needs review first"),
    "agent.skip.wrong_data": ("Datos incorrectos", "Wrong data"),
    "agent.skip.knows_debtor": ("Conozco al deudor", "I know the debtor"),
    "agent.skip.other": ("Otro", "Other"),
    "agent.offer.unanswered": ("La llamada no se conectó:", "The call did not connect:"),
    "agent.offer.denied": ("No se puede llamar ahora:", "Cannot call now:"),
    "agent.accounts": ("Cuentas", "Accounts"),
    "agent.balance": ("Saldo", "Balance"),
    "agent.days_past_due": ("Días de mora", "Days past due"),
    "agent.timeline": ("Historial de contacto", "Contact history"),
    "agent.promises": ("Promesas", "Promises"),
    "agent.law": ("Lo que la ley aún permite", "What the law still allows"),
    "agent.law.allowed": ("permitido ahora", "allowed now"),
    "agent.law.denied": ("no permitido", "not allowed"),
    "agent.law.next": ("próximo permitido", "next allowed"),
    "agent.channel.call": ("Otra llamada", "Another call"),
    "agent.channel.sms": ("Un SMS", "A text"),
    "agent.script": ("Guion", "Script"),
    "agent.script.text": (
        "Salude, pregunte por el titular y verifique su identidad (documento o fecha de nacimiento) antes de "
        "mencionar la deuda. Luego: saldo, propuesta de pago, fecha y confirmación.",
        "Greet, ask for the debtor and verify their identity (ID or date of birth) before mentioning the debt. "
        "Then: balance, payment proposal, date and confirmation.",
    ),
    "agent.disposition": ("Tipificación", "Disposition"),
    "agent.code": ("Resultado (1-9)", "Outcome (1-9)"),
    "agent.note": ("Nota", "Note"),
    "agent.promise_amount": ("Monto prometido", "Promised amount"),
    "agent.promise_due": ("Fecha de pago", "Payment date"),
    "agent.callback_at": ("Volver a llamar (hora local de la sede)", "Call back at (site's local time)"),
    "agent.callback_anyone": ("Cualquier agente puede devolverla", "Any agent may take it"),
    "agent.line_type": ("Tipo de línea", "Line type"),
    "agent.line.unknown": ("No indicado", "Not stated"),
    "agent.line.personal": ("Personal", "Personal"),
    "agent.line.work": ("Trabajo", "Work"),
    "agent.save": ("Guardar (Ctrl+Enter)", "Save (Ctrl+Enter)"),
    "agent.saved": ("Tipificación guardada.", "Disposition saved."),
    "agent.dialer_down": (
        "El marcador no responde: sus llamadas, pausas y regresos esperan a que vuelva. Lo guardado no se pierde; "
        "pulse Disponible (R) para volver a intentarlo.",
        "The dialer is not answering: your calls, pauses and resumes wait until it is back. Nothing saved is lost; "
        "press Ready (R) to try again.",
    ),
    "agent.pending": (
        "Otra llamada le fue conectada y espera: aparece al guardar la tipificación de esta.",
        "Another call was connected to you and waits: it shows once this one's disposition is saved.",
    ),
    "agent.ended": ("La llamada terminó: guarde la tipificación.", "The call ended: save the disposition."),
    "agent.reconnecting": ("Reconectando…", "Reconnecting…"),
    "agent.keys": (
        "Teclado: R disponible · P pausa · L llamar · S saltar · / buscar cuenta · C confirmar titular · 1-9 resultado"
        " · Ctrl+Enter guardar",
        "Keys: R ready · P pause · L call · S skip · / find an account · C confirm debtor · 1-9 outcome · Ctrl+Enter"
        " save",
    ),
    "reason.outside_contact_window": ("fuera del horario permitido", "outside the allowed hours"),
    "reason.outside_requested_hours": ("fuera del horario pedido por el deudor", "outside the debtor's hours"),
    "reason.public_holiday": ("día festivo", "public holiday"),
    "reason.account_withdrawn": ("cuenta retirada", "account withdrawn"),
    "reason.account_paid": ("cuenta pagada", "account paid"),
    "reason.account_not_active": ("cuenta no activa", "account not active"),
    "reason.debtor_opt_out": ("el deudor pidió no ser contactado", "the debtor opted out"),
    "reason.channel_not_authorised": ("canal no autorizado", "channel not authorised"),
    "reason.frequency_cap": ("límite de contactos alcanzado", "contact limit reached"),
    "reason.quiet_after_conversation": ("pausa tras una conversación", "quiet period after a conversation"),
    "reason.one_channel_after_contact": ("ningún otro contacto hoy", "no other contact today"),
    "reason.abandoned_recently": ("abandonada hace poco: el número descansa", "abandoned recently: the number rests"),
    "reason.min_interval": ("muy pronto tras el último contacto", "too soon after the last contact"),
    "reason.promise_to_pay_pending": ("promesa de pago vigente", "a promise to pay is pending"),
    "reason.opt_out_notice_missing": ("falta el aviso de exclusión", "the opt-out notice is missing"),
    "reason.no_law_pack": ("sin reglas legales para esta cartera", "no law pack for this portfolio"),
    "wallboard.title": ("Tablero en vivo", "Live wallboard"),
    "wallboard.agents": ("Agentes", "Agents"),
    "wallboard.agent": ("Agente", "Agent"),
    "wallboard.state": ("Estado", "State"),
    "wallboard.since": ("Desde", "Since"),
    "wallboard.ringing": ("Llamadas timbrando", "Calls ringing"),
    "wallboard.talking": ("En conversación", "Talking"),
    "wallboard.contacts": ("Contactos hoy", "Contacts today"),
    "wallboard.promises": ("Promesas hoy", "Promises today"),
    "wallboard.abandoned": ("Abandonadas hoy", "Abandoned today"),
    "wallboard.abandon_rate": ("Tasa de abandono (ventana)", "Abandonment rate (window)"),
    "wallboard.occupancy": ("Ocupación", "Occupancy"),
    "wallboard.note": (
        "Se actualiza solo. Abandonada: contestada por una persona sin agente libre a tiempo (2 s). Tasa de "
        "abandono: abandonadas sobre contestadas por una persona en la ventana de la campaña. Ocupación: agentes "
        "en llamada o tipificando sobre los agentes no pausados.",
        "Updates by itself. Abandoned: answered by a person with no agent free in time (2 s). Abandonment rate: "
        "abandoned over answered by a person in the campaign's window. Occupancy: agents on a call or in wrap-up "
        "over the agents not paused.",
    ),
    "error.title": ("No se pudo completar", "Could not complete"),
    "error.400": ("La solicitud no es válida.", "The request is not valid."),
    "error.403": ("No tiene permiso para ver esto.", "You are not allowed to see this."),
    "error.404": ("No existe o no está a su alcance.", "It does not exist or is not within your reach."),
    "error.405": ("Método no permitido.", "Method not allowed."),
    "error.409": ("No disponible todavía.", "Not available yet."),
    "error.elsewhere": (
        "Esta grabación está disponible en el nodo de su sede: este nodo no conoce el almacén donde se guarda.",
        "This recording is available at its site's node: this node does not know the store it is kept in.",
    ),
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
