"""python-threatexchange's exchange APIs built for one exchange: its collaboration config, its
credentials, and optionally an endpoint that replaces the API's base URL (a mirror, an egress
proxy, a test server on loopback).

The fetcher and the writer both build their API objects here, so an exchange configured with an
endpoint is read from and written to at that endpoint, by the package's own client code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from threatexchange.exchanges.clients.fb_threatexchange.api import ThreatExchangeAPI
from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEnvironment, NCMECHashAPI
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.exchanges.signal_exchange_api import TSignalExchangeAPICls

from connectors.exchanges.config import InvalidExchange, supports_auth

# APIs whose base URL an exchange's `endpoint` can replace.
ENDPOINT_APIS = frozenset({
    NCMECSignalExchangeAPI.get_name(), StopNCIISignalExchangeAPI.get_name(),
    FBThreatExchangeSignalExchangeAPI.get_name(),
})


def check_endpoint(api: str, endpoint: Any) -> str | None:
    """An exchange's endpoint as stored: None, or an http(s) URL for an API that can take one."""
    if endpoint in (None, ""):
        return None
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise InvalidExchange("endpoint must be an http:// or https:// URL")
    if api not in ENDPOINT_APIS:
        raise InvalidExchange(f"exchange API '{api}' takes no endpoint (only {', '.join(sorted(ENDPOINT_APIS))})")
    return endpoint.rstrip("/")


class _NCMECAtEndpoint(NCMECSignalExchangeAPI):
    """NCMEC's API whose hash API client talks to `endpoint` instead of the environment's URL (the
    environment still names the database; NCMEC's client keeps no other base URL)."""

    endpoint: str = ""

    def get_client(self, environment: NCMECEnvironment) -> NCMECHashAPI:
        client = super().get_client(environment)
        client._base_url = self.endpoint
        return client


def exchange_client(api_cls: TSignalExchangeAPICls, collab: CollaborationConfigBase, credentials: Any,
                    endpoint: str | None = None) -> Any:
    """The API object for one exchange. Credentials None: the API's own helper looks for them in
    its environment variable or file (and raises its missing-auth error when there are none)."""
    if not supports_auth(api_cls):
        return api_cls.for_collab(collab)
    if endpoint is None:
        return api_cls.for_collab(collab, credentials)  # type: ignore[call-arg]
    name = api_cls.get_name()
    creds = credentials or api_cls.get_credential_cls().get(api_cls)  # type: ignore[attr-defined]
    if name == NCMECSignalExchangeAPI.get_name():
        api = _NCMECAtEndpoint(collab, creds.user, creds.password)  # type: ignore[arg-type]
        api.endpoint = endpoint
        return api
    if name == StopNCIISignalExchangeAPI.get_name():
        return api_cls.for_collab(collab, dataclasses.replace(creds, base_url_override=endpoint))  # type: ignore[call-arg]
    if name == FBThreatExchangeSignalExchangeAPI.get_name():
        return FBThreatExchangeSignalExchangeAPI(ThreatExchangeAPI(creds.api_token, endpoint_override=endpoint),
                                                 collab)  # type: ignore[arg-type]
    raise InvalidExchange(f"exchange API '{name}' takes no endpoint")
