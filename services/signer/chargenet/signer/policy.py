"""Who may do what: callers authenticated by bearer token, each allowed some keys and functions.

Tokens are compared in constant time against every configured caller (not stopping at the first
match), so response timing reveals neither a token's prefix nor which caller it belongs to.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any


class PolicyConfigurationError(ValueError):
    pass


@dataclass(frozen=True)
class Caller:
    name: str
    key_patterns: tuple[str, ...]
    function_patterns: tuple[str, ...]
    sign_typed_data: bool

    def may_use_key(self, alias: str) -> bool:
        return any(fnmatch.fnmatchcase(alias, pattern) for pattern in self.key_patterns)

    def may_call(self, contract: str, function: str) -> bool:
        """``contract`` is the registered name or the checksummed address."""
        target = f"{contract}.{function}"
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.function_patterns)


class Policy:
    def __init__(self, callers: dict[str, tuple[str, Caller]]) -> None:
        if not callers:
            raise PolicyConfigurationError("signer_callers: at least one caller is needed")
        # Digests, so every comparison runs over equal lengths whatever the token's length.
        self._entries = [
            (hashlib.sha256(token.encode()).digest(), caller) for token, caller in callers.values()
        ]

    def authenticate(self, token: str) -> Caller | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for digest, caller in self._entries:
            if hmac.compare_digest(presented, digest):
                found = caller
        return found

    @classmethod
    def from_json(cls, text: str) -> Policy:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            # The text holds tokens: say where it broke, not what it says.
            raise PolicyConfigurationError(
                f"signer_callers: not valid JSON (line {error.lineno}, column {error.colno})"
            ) from None
        if not isinstance(raw, dict):
            raise PolicyConfigurationError("signer_callers: must be a JSON object of callers")
        callers: dict[str, tuple[str, Caller]] = {}
        seen_tokens: set[str] = set()
        for name, entry in raw.items():
            token, caller = _parse_caller(name, entry)
            if token in seen_tokens:
                raise PolicyConfigurationError(f"signer_callers: {name}: token used twice")
            seen_tokens.add(token)
            callers[name] = (token, caller)
        return cls(callers)


def _patterns(name: str, entry: dict[str, Any], field: str) -> tuple[str, ...]:
    value = entry.get(field, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise PolicyConfigurationError(f"signer_callers: {name}.{field}: a list of patterns")
    return tuple(value)


def _parse_caller(name: str, entry: Any) -> tuple[str, Caller]:
    if not isinstance(entry, dict):
        raise PolicyConfigurationError(f"signer_callers: {name}: must be an object")
    unknown = set(entry) - {"token", "keys", "functions", "sign_typed_data"}
    if unknown:
        raise PolicyConfigurationError(f"signer_callers: {name}: unknown fields {sorted(unknown)}")
    token = entry.get("token")
    if not isinstance(token, str) or len(token) < 16:
        raise PolicyConfigurationError(
            f"signer_callers: {name}.token: a string of at least 16 characters"
        )
    typed = entry.get("sign_typed_data", False)
    if not isinstance(typed, bool):
        raise PolicyConfigurationError(f"signer_callers: {name}.sign_typed_data: true or false")
    return token, Caller(
        name=name,
        key_patterns=_patterns(name, entry, "keys"),
        function_patterns=_patterns(name, entry, "functions"),
        sign_typed_data=typed,
    )
