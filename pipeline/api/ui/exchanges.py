"""The exchanges page: each exchange with its fetch status and progress, enable / disable, fetch
now, and a create form built from the chosen API's config schema (GET /c/exchanges/api/<api>/schema)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from connectors.exchanges.config import EXCHANGE_APIS, InvalidExchange, api_schema, exchange_api
from pipeline.api.exchanges import change_exchange, create_exchange, fetch_status
from pipeline.api.http import ApiError, int_param
from pipeline.api.ui.frame import PAGE, Frame, age, pager
from pipeline.api.ui.render import Html, esc, join, link, render, table, tag
from pipeline.clock import now_ms


def field_input(field: dict[str, Any]) -> Html:
    """One input of the create form for one config field descriptor."""
    name, kind, default = f"cfg_{field['name']}", field["type"], field["default"]
    label = field["name"] + (" *" if field["required"] else "")
    if kind == "enum":
        options = join(tag("option", c, value=c, selected="selected" if c == default else None) for c in field["choices"] or [])
        control = Html(f'<select name="{esc(name)}">{options}</select>')
    elif kind == "boolean":
        control = Html(f'<input type="checkbox" name="{esc(name)}" value="true"{" checked" if default else ""}>')
    else:
        shown = ", ".join(map(str, default)) if isinstance(default, list) else ("" if default is None else default)
        attrs = {"type": "number" if kind == "number" else "text", "name": name, "value": shown,
                 "placeholder": "comma separated" if kind.startswith(("list_of", "set_of")) else None}
        text = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items() if v is not None)
        control = Html(f'<input{text}{" required" if field["required"] else ""}>')
    return tag("label", join([label, " ", control, tag("small", f" {field['help']}" if field["help"] else "")]),
               class_="field")


def _scalar(kind: str, text: str, name: str) -> Any:
    if kind.endswith("number"):
        try:
            return int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise ApiError(400, f"{name} must be a number, not '{text}'") from None
    return text


def api_json_of(fields: list[dict[str, Any]], form: dict[str, Any]) -> dict[str, Any]:
    """The create form's values as the API's api_json (empty optional fields left out)."""
    out: dict[str, Any] = {}
    for f in fields:
        kind, raw = f["type"], str(form.get(f"cfg_{f['name']}", "")).strip()
        if kind == "boolean":
            out[f["name"]] = raw == "true"
        elif not raw:
            continue
        elif kind.startswith(("list_of", "set_of")):
            out[f["name"]] = [_scalar(kind, part.strip(), f["name"]) for part in raw.split(",") if part.strip()]
        else:
            out[f["name"]] = _scalar(kind, raw, f["name"])
    return out


def _when(ts_s: int | None) -> str:
    return "never" if not ts_s else age(ts_s * 1000)


class ExchangePages(Frame):
    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/ui/exchanges", self.exchanges), ("POST", "/ui/exchanges", self.create),
                ("POST", "/ui/exchange/{name}/{change}", self.change)]

    def _body(self, request: web.Request, api: str) -> Html:
        offset = int_param(request, "offset", 0, 0, 10**9)
        names = sorted(self.state.exchanges.configs)
        rows = []
        for name in names[offset:offset + PAGE]:
            record = self.state.exchanges.configs[name]
            s = fetch_status(self.state, record)
            outcome = ("fetching since " + _when(s["running_fetch_start_ts"]) if s["running_fetch_start_ts"] else
                       "never fetched" if s["last_fetch_succeeded"] is None else
                       ("succeeded " if s["last_fetch_succeeded"] else "failed ") + _when(s["last_fetch_complete_ts"]))
            progress = (f"{s['fetched_items']:,} records banked; last fetch {s['records_last_fetch']:,} at "
                        f"{s['records_per_s']:,.0f}/s" + ("; up to date" if s["up_to_date"] else ""))
            path = f"/ui/exchange/{quote(name)}"
            toggle = "disable" if record["enabled"] else "enable"
            rows.append([link(f"/ui/bank/{quote(name)}", name), record["api"], "enabled" if record["enabled"] else "disabled",
                         join([outcome, tag("div", s["last_error"], class_="error") if s["last_error"] else ""]), progress,
                         join([self.button(request, f"{path}/{toggle}", toggle), " ",
                               self.button(request, f"{path}/fetch", "fetch now")])])
        options = join(tag("option", a, value=a, selected="selected" if a == api else None) for a in EXCHANGE_APIS)
        schema = api_schema(exchange_api(api))
        return render("exchanges.html", pager=pager("/ui/exchanges", offset, len(names)),
                      exchange_table=table(["exchange (its bank)", "API", "state", "last fetch", "progress", ""], rows,
                                           empty="no exchanges yet", id="exchanges"),
                      api_options=options, api=api, csrf=self.auth.csrf_token(request),
                      fields=join(field_input(f) for f in schema["config_schema"]["fields"]) or
                      tag("p", f"{api} takes no configuration.", class_="empty"),
                      credentials="" if schema["credentials_schema"] is None else
                      tag("p", f"{api} needs credentials: set them with POST /c/exchanges/api/{api} "
                               "(credential_json), or where the API's own tools keep them."))

    def _api(self, request: web.Request, form: dict[str, Any] | None = None) -> str:
        api = str((form or {}).get("api") or request.query.get("api") or next(iter(EXCHANGE_APIS)))
        try:
            exchange_api(api)
        except InvalidExchange:
            raise ApiError(400, f"no such Exchange API '{api}'") from None
        return api

    async def exchanges(self, request: web.Request) -> web.StreamResponse:
        return self.page(request, "Exchanges", self._body(request, self._api(request)))

    async def create(self, request: web.Request) -> web.StreamResponse:
        form = await self.changing_form(request)
        api = self._api(request, form)
        try:
            fields = api_schema(exchange_api(api))["config_schema"]["fields"]
            record = await create_exchange(self.state, str(form.get("name", "")).strip(), api, api_json_of(fields, form))
        except ApiError as exc:
            return self.page(request, "Exchanges", self._body(request, api), message=exc.message, status=exc.status)
        raise self.done("/ui/exchanges", f"Exchange {record['name']} created, with its bank.")

    async def change(self, request: web.Request) -> web.StreamResponse:
        await self.changing_form(request)
        name, change = request.match_info["name"], request.match_info["change"]
        record = self.state.exchanges.configs.get(name)
        if record is None:
            raise ApiError(404, f"Exchange '{name}' not found")
        changes = {"enable": {"enabled": True}, "disable": {"enabled": False},
                   "fetch": {"fetch_requested_at": now_ms()}}.get(change)
        if changes is None:
            raise ApiError(404, f"no such change '{change}'")
        await change_exchange(self.state, record, **changes)
        note = "fetch requested" if change == "fetch" else f"{change}d"
        raise self.done("/ui/exchanges", f"Exchange {name}: {note}.")
