"""The agent's preview call: the account preview mode offers it (call or skip it), or one of its portfolios it
finds, called through the compliance gate and the dialer, which connects the answered call to this agent; its pop
arrives as any other."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from cartera.contact.targets import Denied
from cartera.core.errors import UnknownAgent, UsageError
from cartera.portfolio.identity import code_problem
from cartera.users.directory import User
from cartera.web.agent_pages import signed_in_agent
from cartera.web.context import Web, WebError, check_csrf, refusal
from cartera.workspace.errors import PageNotOpen, WorkspaceError

FOUND_AT_MOST = 10
_ID = re.compile(r"[0-9]{1,12}")


def preview_router(web: Web) -> APIRouter:
    router = APIRouter()

    @router.get("/agent/accounts", include_in_schema=False)
    @web.workers.pooled
    def accounts(request: Request, q: str = "") -> Response:
        viewer, _ = signed_in_agent(web, request)
        query = q.strip()
        if not query or code_problem(query) is not None:
            raise WebError(400, f"search an account reference, not {query[:40]!r}", "error.422")
        found = _accounts(web, viewer.user, ref_prefix=query)
        shown = [f"{row['portfolio']}/{row['ref']}" for row in found]  # CREDITOR/PORTFOLIO/REF, as every audit
        web.audit(viewer.actor, "workspace.search", f"query:{query}", found=shown)
        return JSONResponse(found)

    @router.post("/agent/preview", include_in_schema=False)
    @web.workers.pooled
    def preview(
        request: Request,
        account_id: Annotated[str, Form(max_length=12)],
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        viewer, extension = signed_in_agent(web, request)
        check_csrf(csrf, viewer.session.csrf)
        if not _ID.fullmatch(account_id) or not _accounts(web, viewer.user, account_id=int(account_id)):
            raise WebError(404, f"no account {account_id[:12]!r} within the agent's portfolios", "error.404")
        try:  # the account offered to the agent, or one it found
            call = web.services.offers.dial(viewer.user.name, extension, int(account_id), actor=viewer.actor)
        except Denied as denied:  # the gate's reason and next allowed time, as it audited them
            allowed = denied.decision.next_allowed_at
            when = allowed.isoformat() if allowed else None
            return refusal(409, "account", str(denied), next_allowed_at=when)
        except PageNotOpen as exc:  # its state is not known until its page opens
            return refusal(409, exc.field, str(exc))
        except (WorkspaceError, UsageError) as exc:  # a call on screen or ringing; a dialer that cannot target agents
            return refusal(409, "account", str(exc))
        except UnknownAgent as exc:  # the agent's extension is no agent of the dialer's: nothing recorded
            return refusal(409, "extension", str(exc))
        return JSONResponse({"attempt_id": call.attempt_id}, status_code=202)

    @router.post("/agent/offer/skip", include_in_schema=False)
    @web.workers.pooled
    def skip_offer(
        request: Request,
        account_id: Annotated[str, Form(max_length=12)],
        reason: Annotated[str, Form(max_length=32)],
        csrf: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        viewer, _ = signed_in_agent(web, request)
        check_csrf(csrf, viewer.session.csrf)
        if not _ID.fullmatch(account_id):
            raise WebError(400, f"not an account id: {account_id[:12]!r}", "error.400")
        try:
            web.services.offers.skip(viewer.user.name, int(account_id), reason)
        except WorkspaceError as exc:  # an unknown reason; an account no longer offered to the agent
            return refusal(400 if exc.field == "reason" else 409, exc.field, str(exc))
        return JSONResponse({"skipped": int(account_id)})

    return router


def _accounts(web: Web, user: User, *, ref_prefix: str = "", account_id: int | None = None) -> list[dict[str, object]]:
    """The site's active accounts within ``user``'s portfolios that match, few at most."""
    found = web.services.reads.accounts(
        user.portfolios(web.site), ref_prefix=ref_prefix, account_id=account_id, limit=FOUND_AT_MOST
    )
    return [asdict(row) for row in found]
