"""The creditor API's OpenAPI document, as committed in ``docs/creditor-api.openapi.json``.

Regenerate the file after changing the API:
``python -m cartera.plugins.crm_sync.http.openapi > docs/creditor-api.openapi.json``
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from cartera.plugin import PLUGIN_PREFIX
from cartera.plugins.crm_sync.http.api import API_VERSION, api_router
from cartera.plugins.crm_sync.http.batches import BatchSpool

DESCRIPTION = """\
Creditors deliver assignment batches to a Cartera site node and collect the activity export (calls, SMS,
promises to pay, payments) from it. Every request carries the creditor's bearer token.

Send money as decimal strings. A batch is stored durably before the node answers 202; the node imports it at
its next sync (`GET /batches/{batch_id}` then says `imported`). Re-sending a batch id is safe: it changes
nothing and returns the batch's result. Rows that are not valid assignments are quarantined and reported with
their index, field and reason while the other rows load.
"""


def creditor_api_schema() -> dict[str, Any]:
    app = FastAPI(title="Cartera creditor exchange API", version=API_VERSION, description=DESCRIPTION)
    unused = Path("/nonexistent")
    router = api_router(
        {}, BatchSpool(unused, "COP"), lambda _creditor, _after, _limit: [], logging.getLogger(__name__)
    )
    app.include_router(router, prefix=f"{PLUGIN_PREFIX}/crm_sync")
    return app.openapi()


def render() -> str:
    return json.dumps(creditor_api_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
