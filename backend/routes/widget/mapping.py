"""`PUT /api/widget/mapping`: the admin's stage rules and options. The mapping is checked against
what is live — the account's Kommo pipelines and the ESP's segments — before anything is stored,
so a saved mapping never names a stage or segment that did not exist when it was saved."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backend import connections, repository
from backend.kommo.client import KommoClient
from backend.kommo.widget_auth import WidgetContext, widget_endpoint
from backend.models import MappingRule
from backend.routes.json_body import json_object
from backend.routes.widget.account import answer
from backend.sync import mapping
from backend.sync.options import SyncOptions


@widget_endpoint(write=True)
async def put_mapping(request: Request, ctx: WidgetContext) -> Response:
    resources = request.app.state.resources
    body = await json_object(request)
    rules = mapping.parse_rules(body.get("rules"))
    SyncOptions.parse(body.get("options"))  # shape first: a typo costs no outbound call
    async with resources.sessions() as session:
        connection = await repository.get_esp_connection(session, ctx.account_id)
    if connection is None or not connection.api_key_enc:  # an erased key is no connection
        raise mapping.invalid("connect an email platform first")
    pipelines = await KommoClient(resources, ctx.account_id, host=ctx.account.host).pipelines()
    segments = await connections.provider_for(connection, resources).list_segments()
    segment_ids = [s.id for s in segments]
    mapping.check_against(rules, pipelines, segment_ids)
    options = SyncOptions.parse(body.get("options"), segment_ids)
    async with resources.sessions() as session, session.begin():
        await repository.replace_mapping(session, ctx.account_id, [
            MappingRule(account_id=ctx.account_id, pipeline_id=r.pipeline_id,
                        status_id=r.status_id, action=r.action, segment_id=r.segment_id)
            for r in rules])
        await repository.save_options(session, ctx.account_id, options.to_json(),
                                      mapping.labels(rules, options, pipelines, segments))
    return await answer(request, ctx)


routes = [Route("/api/widget/mapping", put_mapping, methods=["PUT"])]
