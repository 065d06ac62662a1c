"""The disposition's fields are capped alike by the workspace, the agent's page and the workspace API, and the
page's form answers a field it cannot take as the JSON ``{field, error}`` the page reads."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from cartera.core.store.schema import CallbackRow
from cartera.web.agent_pages import _checked
from cartera.web.workspace_api import API_PREFIX
from cartera.workspace.errors import WorkspaceError
from cartera.workspace.service import MAX_NOTE, DispositionInput
from tests import test_agent_page
from tests.test_agent_page import INTEGRATION_TOKEN, Site, connect, page_csrf, signed_in, stream

site = test_agent_page.site  # the running node's fixture


def on_call(site: Site) -> tuple[httpx.Client, str]:
    """ana signed in, the Colombian call on her screen: her client and CSRF token."""
    agent = signed_in(site.base, "ana")
    csrf = page_csrf(agent)
    events, stop = stream(agent, "/agent/events")
    events.next("agent_state")
    connect(site, site.calls.colombian)
    events.next("screen_pop")
    stop.set()
    return agent, csrf


@pytest.mark.abuse
def test_a_note_past_the_cap_is_refused_by_the_workspace_the_page_and_the_api(site: Site) -> None:
    agent, csrf = on_call(site)
    assert f'name="note" maxlength="{MAX_NOTE}"' in agent.get("/agent").text
    long_note = "x" * (MAX_NOTE + 1)
    site.node.workspace_service.confirm_right_party("ana", site.calls.colombian, within=None)
    with pytest.raises(WorkspaceError) as refused:
        site.node.workspace_service.post_disposition(
            "ana", DispositionInput(site.calls.colombian, "right_party_contact", long_note), within=None
        )
    assert refused.value.field == "note"
    page = agent.post(
        f"/agent/calls/{site.calls.colombian}/disposition",
        data={"code": "right_party_contact", "note": long_note, "csrf": csrf},
    )
    assert (page.status_code, page.json()["field"]) == (422, "note")
    body = {"agent": "ana", "attempt_id": site.calls.colombian, "code": "right_party_contact", "note": long_note}
    api = agent.post(f"{API_PREFIX}/dispositions", json=body, headers={"Authorization": f"Bearer {INTEGRATION_TOKEN}"})
    assert (api.status_code, api.json()["field"]) == (422, "body.note")


@pytest.mark.abuse
def test_a_callback_time_with_its_utc_offset_is_taken_from_the_page(site: Site) -> None:
    agent, csrf = on_call(site)
    path = f"/agent/calls/{site.calls.colombian}/disposition"
    too_long = agent.post(path, data={"code": "callback_requested", "callback_at": "2" * 41, "csrf": csrf})
    assert (too_long.status_code, too_long.json()["field"]) == (422, "callback_at")
    # Tuesday 10:00 in Bogotá, written in UTC+14
    saved = agent.post(path, data={"code": "callback_requested", "callback_at": "2026-11-25T05:00+14:00", "csrf": csrf})
    assert saved.status_code == 201, saved.text


@pytest.mark.abuse
def test_callback_anyone_false_keeps_the_callback_for_its_agent_and_a_value_of_neither_is_refused(
    site: Site,
) -> None:
    agent, csrf = on_call(site)
    path = f"/agent/calls/{site.calls.colombian}/disposition"
    form = {"code": "callback_requested", "callback_at": "2026-12-02T10:00", "csrf": csrf}
    for value in ("yes", "2", "nah", "<i>"):  # fewer than the refusals an agent may make in a second
        refused = agent.post(path, data=form | {"callback_anyone": value})
        assert refused.status_code == 400, value
        assert refused.json()["field"] == "callback_anyone", value
        assert value not in refused.json()["error"], value
    with site.node.db.reading() as session:
        assert session.scalars(select(CallbackRow)).all() == []
    saved = agent.post(path, data=form | {"callback_anyone": "FALSE"})
    assert saved.status_code == 201, saved.text
    with site.node.db.reading() as session:
        assert [row.agent for row in session.scalars(select(CallbackRow))] == ["ana"]


def test_callback_anyone_reads_a_checkbox_value_without_case() -> None:
    for value in ("1", "on", "ON", "true", "True", "TRUE"):
        assert _checked(value) is True, value
    for value in ("", "0", "off", "Off", "false", "FALSE"):
        assert _checked(value) is False, value
    for value in ("yes", "no", "2", "-1", "t", "f", "\uff54\uff52\uff55\uff45"):  # fullwidth "true"
        with pytest.raises(WorkspaceError) as refused:
            _checked(value)
        assert refused.value.field == "callback_anyone"
