"""An agent whose extension the dialer does not serve (a typo in ``users add --extension``) pressing Call is refused
before anything is recorded: no attempt the law packs would count for a call that could never be placed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cartera.core.store.schema import ContactAttempt
from tests import test_agent_page
from tests.test_agent_page import Site, page_csrf, signed_in
from tests.workspace_seed import uncalled_account

pytestmark = pytest.mark.abuse

site = test_agent_page.site


def test_a_call_for_an_extension_the_dialer_does_not_serve_is_refused_and_records_no_attempt(site: Site) -> None:
    account_id = uncalled_account(site.node)
    dora = signed_in(site.base, "dora")  # extension agent-99: the simulator's seats are agent-01 and agent-02
    csrf = page_csrf(dora)
    refused = dora.post("/agent/preview", data={"account_id": str(account_id), "csrf": csrf})
    assert refused.status_code == 409, refused.text
    assert refused.json() == {
        "field": "extension",
        "error": "the dialer serves no agent 'agent-99': its call is not placed",
    }
    with site.node.db.session() as session:
        attempts = session.scalar(select(func.count()).where(ContactAttempt.account_id == account_id))
    assert attempts == 0
    ana = signed_in(site.base, "ana")  # the account is not spent: a served agent calls it
    placed = ana.post("/agent/preview", data={"account_id": str(account_id), "csrf": page_csrf(ana)})
    assert placed.status_code == 202, placed.text
