"""The OpenAPI document, generated from the route table so that it cannot drift from the routes."""

from __future__ import annotations

import re
from typing import Any

from pipeline.api.http import Route

ERROR = {"type": "object", "properties": {"message": {"type": "string"}}}


def openapi_document(table: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in table:
        params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                  for p in re.findall(r"{(\w+)}", route.path)]
        params += [{"name": p, "in": "query", "required": False, "schema": {"type": "string"}} for p in route.params]
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "Bad request", "content": {"application/json": {"schema": ERROR}}},
            },
        }
        op["x-hmas-role"] = route.needs  # the token role it needs (docs/api.md); reads may be open
        if route.needs != "public":
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = {"description": "Missing or wrong token"}
            op["responses"]["403"] = {"description": f"The token's role is below {route.needs}"}
        if route.rate:
            op["responses"]["429"] = {"description": f"Over this client's {route.rate} rate limit (see Retry-After)"}
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "Open Media Match API", "version": "1",
                 "description": "HMA Streams: upstream HMA's OpenMediaMatch routes (its title, so that its clients "
                                "recognise the service), plus bank controls, feedback and quarantine review."},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
