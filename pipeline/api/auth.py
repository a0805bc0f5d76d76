"""API tokens and their roles: who may call which route.

Roles, each allowing what the ones before it allow:
- read: lookups, hashing, listings (also open to anyone while HMAS_API_OPEN_READS=1, the default);
- curate: banks, bank content, feedback, quarantine reviews;
- admin: exchanges and their credentials, signal type settings, the /dev routes.
Routes marked public (health, metrics, the OpenAPI document) never need a token.

Tokens come from HMAS_API_TOKEN (one admin token) and HMAS_API_TOKENS (`token:role` entries,
comma-separated or one a line in a file; tokens hold no commas). A presented token is compared with every configured one
in constant time; tokens are never logged, and a client is named in memory by a digest of its token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Settings

PUBLIC, READ, CURATE, ADMIN = "public", "read", "curate", "admin"
ROLES = (READ, CURATE, ADMIN)  # in increasing power


def allows(role: str, needed: str) -> bool:
    """Whether a token of `role` may call a route that needs `needed`."""
    return needed == PUBLIC or ROLES.index(role) >= ROLES.index(needed)


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer <token>` header value, or ""."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    role: str


class ApiTokens:
    """The configured tokens; `role_of` is what the API's and the UI's checks ask."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        for index, (token, role) in enumerate(entries):
            if not token:
                raise ValueError(f"API token entry {index + 1}: empty token")
            if role not in ROLES:
                raise ValueError(f"API token entry {index + 1}: role {role!r} is not one of {', '.join(ROLES)}")
        self._entries = tuple(_Entry(_digest(token), role) for token, role in entries)

    @classmethod
    def from_settings(cls, settings: Settings) -> "ApiTokens":
        entries = [(settings.api_token, ADMIN)] if settings.api_token else []
        return cls(entries + parse_token_entries(settings.api_tokens))

    @property
    def configured(self) -> bool:
        return bool(self._entries)

    def role_of(self, presented: str) -> str | None:
        """The role of a presented token, None when it is not one of ours. Every configured token
        is compared (digests of equal length, constant time), whichever matches."""
        given = _digest(presented)
        role = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry.digest) and presented:
                role = entry.role
        return role

    @staticmethod
    def client_id(presented: str) -> str:
        """A name for a token's client (rate limits) that does not reveal the token."""
        return "token:" + _digest(presented).hex()[:16]

    def session_key(self) -> bytes:
        """A secret derived from every token and its role (the UI signs its session cookies with it,
        so a token removed or given another role ends every session)."""
        return hashlib.sha256(b"".join(entry.digest + entry.role.encode() for entry in self._entries)).digest()


def parse_token_entries(value: str) -> list[tuple[str, str]]:
    """`token:role` entries from HMAS_API_TOKENS: the text itself, or the file it names (one entry
    a line, # comments). A token may hold colons: the role is after the last one."""
    if not value.strip():
        return []
    path = Path(value.strip()).expanduser()
    from_file = ":" not in value and path.is_file()
    text = path.read_text() if from_file else value
    entries = []
    for line in text.replace(",", "\n").splitlines():
        line = line.split("#", 1)[0].strip() if from_file else line.strip()
        if not line:
            continue
        token, colon, role = line.rpartition(":")
        if not colon:
            raise ValueError(f"API token entry {len(entries) + 1}: expected token:role")
        entries.append((token.strip(), role.strip()))
    return entries
