"""Exchange credentials: sealed with the operator's key on hma.exchange-credentials, or found where
python-threatexchange's credential helpers look (an environment variable or a file).

Clear-text credentials exist only in the memory of the process that uses them: they are never in
a route's answer, a log line or a topic. Without HMAS_SECRET_KEY (a Fernet key, which needs the
`cryptography` package) nothing is stored, and the caller is told how to provide them instead.
"""

from __future__ import annotations

import json
from typing import Any

from threatexchange.exchanges.auth import CredentialHelper
from threatexchange.exchanges.signal_exchange_api import TSignalExchangeAPICls
from threatexchange.utils import dataclass_json

from connectors.exchanges.config import supports_auth
from pipeline.clock import now_ms


class CredentialsUnavailable(Exception):
    """Credentials that cannot be stored or read: the message says what the operator can do."""


def _fernet(secret_key: str) -> Any:
    if not secret_key:
        raise CredentialsUnavailable(
            "storing credentials needs HMAS_SECRET_KEY (a Fernet key) so that they are encrypted on the topic")
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise CredentialsUnavailable(
            "storing credentials needs the `cryptography` package to encrypt them with HMAS_SECRET_KEY") from None
    try:
        return Fernet(secret_key.encode())
    except ValueError:
        raise CredentialsUnavailable("HMAS_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes)") from None


def credential_cls(api_cls: TSignalExchangeAPICls) -> type[CredentialHelper]:
    if not supports_auth(api_cls):
        raise CredentialsUnavailable(f"exchange API '{api_cls.get_name()}' takes no credentials")
    return api_cls.get_credential_cls()  # type: ignore[attr-defined]


def where_to_provide(api_cls: TSignalExchangeAPICls) -> str:
    """How an operator provides this API's credentials without storing them."""
    cls = credential_cls(api_cls)
    ways = [f"the environment variable {cls.ENV_VARIABLE}"] if cls.ENV_VARIABLE else []
    ways += [f"the file {cls.FILE_NAME}"] if cls.FILE_NAME else []
    return " or ".join(ways) or "HMAS_SECRET_KEY and POST /c/exchanges/api/<api>"


def sealed_record(api_cls: TSignalExchangeAPICls, credential_json: dict[str, Any], secret_key: str) -> dict[str, Any]:
    """The hma.exchange-credentials value: the credentials checked, then encrypted."""
    cls = credential_cls(api_cls)
    try:
        creds = dataclass_json.dataclass_load_dict(credential_json, cls)
    except Exception as exc:
        raise ValueError(f"credential_json does not fit {cls.__name__}: {type(exc).__name__}") from None
    token = _fernet(secret_key).encrypt(json.dumps(dataclass_json.dataclass_dump_dict(creds)).encode())
    return {"api": api_cls.get_name(), "sealed": token.decode(), "updated_at": now_ms()}


def unsealed(api_cls: TSignalExchangeAPICls, record: dict[str, Any], secret_key: str) -> CredentialHelper:
    """The credentials of a hma.exchange-credentials value."""
    from cryptography.fernet import InvalidToken  # only reached when a record was sealed

    try:
        clear = _fernet(secret_key).decrypt(record["sealed"].encode())
    except InvalidToken:
        raise CredentialsUnavailable("stored credentials do not open with HMAS_SECRET_KEY (was the key changed?)") from None
    return dataclass_json.dataclass_load_dict(json.loads(clear), credential_cls(api_cls))


def found_outside(api_cls: TSignalExchangeAPICls) -> bool:
    """Whether python-threatexchange's helper finds credentials in its environment variable or file."""
    if not supports_auth(api_cls):
        return False
    cls = credential_cls(api_cls)
    try:
        return (cls._from_env() or cls._from_file()) is not None
    except Exception:  # a malformed value: the fetch will say so
        return True


def credentials_for(api_cls: TSignalExchangeAPICls, record: dict[str, Any] | None, secret_key: str) -> CredentialHelper | None:
    """Stored credentials if any, else None (the API then looks in the environment or its file)."""
    if record is None or not supports_auth(api_cls):
        return None
    return unsealed(api_cls, record, secret_key)
