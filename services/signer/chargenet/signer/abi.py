"""Contract calls from requests: which contract, which function, which arguments, as calldata.

The signer is generic: a contract is anything registered by name with an address and an ABI, or
any address with an ABI passed in the request. Arguments come ABI-encoded (checked by decoding) or
as JSON, converted strictly by the function's input types (no floats for integers, no silent
truncation), so a caller's mistake is refused with the argument's name instead of being signed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError, ParseError
from eth_abi.grammar import ABIType, TupleType
from eth_abi.grammar import parse as parse_type
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ARRAY = re.compile(r"^(.*)\[(\d*)\]$")
_INT = re.compile(r"^(u?)int(\d*)$")
_BYTES_N = re.compile(r"^bytes(\d+)$")
#: Tuples and array dimensions one inside another; eth_abi recurses once per level (and
#: re-parses the rest of the type at each), so thousands of levels held the event loop for a
#: minute or ran out of recursion.
_MAX_NESTING = 32
#: Digits of the largest int256/uint256 (2**256 - 1 has 78); Python's int() refuses past 4300.
_MAX_DIGITS = 78


class AbiError(ValueError):
    """A request that does not fit the ABI; ``field`` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Function:
    name: str
    signature: str
    selector: bytes
    inputs: tuple[dict[str, Any], ...]
    mutability: str

    @property
    def input_types(self) -> list[str]:
        return [canonical_type(item) for item in self.inputs]


@dataclass(frozen=True)
class Contract:
    label: str  # the registered name, or the checksummed address for ad-hoc calls
    address: str
    functions: tuple[Function, ...]
    errors: dict[bytes, tuple[str, list[str]]]

    def function(self, name: str) -> Function:
        """By name, or by full signature when the name is overloaded."""
        if "(" in name:
            compact = name.replace(" ", "")
            matches = [f for f in self.functions if f.signature == compact]
        else:
            matches = [f for f in self.functions if f.name == name]
        if not matches:
            raise AbiError("function", f"{self.label} has no function {name!r}")
        if len(matches) > 1:
            options = ", ".join(f.signature for f in matches)
            raise AbiError("function", f"{name!r} is overloaded; use one of {options}")
        function = matches[0]
        if function.mutability in {"view", "pure"}:
            raise AbiError(
                "function", f"{function.signature} is {function.mutability}; nothing to send"
            )
        return function


def canonical_type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in item.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def parse_abi(abi: Any, label: str, address: str, field: str = "abi_json") -> Contract:
    if isinstance(abi, dict):
        abi = [abi]
    if not isinstance(abi, list):
        raise AbiError(field, "an ABI is a JSON array of fragments")
    functions: list[Function] = []
    errors: dict[bytes, tuple[str, list[str]]] = {}
    try:
        for fragment in abi:
            if not isinstance(fragment, dict):
                raise AbiError(field, "every ABI fragment is an object")
            kind = fragment.get("type", "function")
            if kind not in {"function", "error"}:
                continue
            inputs = tuple(fragment.get("inputs", []))
            types = ",".join(canonical_type(item) for item in inputs)
            signature = f"{fragment['name']}({types})"
            if kind == "error":
                errors[keccak(text=signature)[:4]] = (
                    str(fragment["name"]),
                    [canonical_type(item) for item in inputs],
                )
                continue
            functions.append(
                Function(
                    name=str(fragment["name"]),
                    signature=signature,
                    selector=function_signature_to_4byte_selector(signature),
                    inputs=inputs,
                    mutability=str(fragment.get("stateMutability", "nonpayable")),
                )
            )
    except (KeyError, TypeError) as error:
        raise AbiError(field, f"malformed ABI fragment ({error})") from None
    except RecursionError:
        raise AbiError(field, "components nested too deep") from None
    return Contract(label=label, address=address, functions=tuple(functions), errors=errors)


def checksum(value: str, field: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise AbiError(field, f"{value!r} is not a 0x-prefixed 20-byte hex address")
    return str(to_checksum_address(value))


class ContractRegistry:
    """Contracts callable by name, from the signer's configuration."""

    def __init__(self, contracts: dict[str, Contract]) -> None:
        self._contracts = contracts

    def get(self, name: str) -> Contract:
        contract = self._contracts.get(name)
        if contract is None:
            raise AbiError("contract_name", f"no contract registered as {name!r}")
        return contract

    def names(self) -> list[str]:
        return sorted(self._contracts)

    @classmethod
    def from_json(cls, text: str, base: Path | None = None) -> ContractRegistry:
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError as error:
            raise AbiError("signer_contracts", f"not valid JSON ({error})") from None
        if not isinstance(raw, dict):
            raise AbiError("signer_contracts", "a JSON object of name -> {address, abi}")
        contracts: dict[str, Contract] = {}
        for name, entry in raw.items():
            field = f"signer_contracts.{name}"
            if not isinstance(entry, dict) or "address" not in entry:
                raise AbiError(field, "needs an address and an abi or artifact")
            address = checksum(entry["address"], f"{field}.address")
            abi = entry.get("abi")
            if abi is None and "artifact" in entry:
                path = Path(entry["artifact"])
                if base is not None and not path.is_absolute():
                    path = base / path
                try:
                    abi = json.loads(path.read_text())["abi"]
                except (OSError, ValueError, KeyError) as error:
                    raise AbiError(
                        f"{field}.artifact", f"cannot read an abi from {path}: {error}"
                    ) from None
            if abi is None:
                raise AbiError(field, "needs an abi or an artifact")
            contracts[name] = parse_abi(abi, name, address, field=f"{field}.abi")
        return cls(contracts)


def encode_call(function: Function, *, json_args: str | None, encoded: bytes | None) -> bytes:
    types = function.input_types
    field = "abi_encoded_args" if encoded is not None else "json_args"
    for index, kind in enumerate(types):
        problem = type_problem(kind)
        if problem is not None:
            raise AbiError(field, f"input {index} of {function.name}: type {kind[:80]!r} {problem}")
    if encoded is not None:
        try:
            abi_decode(types, encoded, strict=True)
        except (DecodingError, ParseError, ValueError, OverflowError) as error:
            raise AbiError(
                "abi_encoded_args", f"not a valid encoding of {function.signature}: {error}"
            ) from None
        return function.selector + encoded
    try:
        values = json.loads(json_args) if json_args else []
    except (ValueError, RecursionError) as error:
        raise AbiError("json_args", f"not valid JSON ({json_reason(error)})") from None
    if not isinstance(values, list):
        raise AbiError("json_args", "must be a JSON array of the function's arguments")
    if len(values) != len(function.inputs):
        raise AbiError(
            "json_args",
            f"{function.signature} takes {len(function.inputs)} arguments, got {len(values)}",
        )
    converted = [
        _convert(item, value, f"json_args[{index}] ({item.get('name') or item['type']})")
        for index, (item, value) in enumerate(zip(function.inputs, values, strict=True))
    ]
    try:
        return function.selector + abi_encode(types, converted)
    except (EncodingError, ParseError, ValueError, OverflowError) as error:
        raise AbiError("json_args", str(error)) from None


def type_problem(kind: str) -> str | None:
    """Why eth_abi cannot encode ``kind`` (a canonical type), or None. Checked before any
    conversion: sizes come from the caller's ABI (``uint99999999999999`` made ``_integer``
    compute 2**(10**14))."""
    depth = deepest = 0
    for char in kind:
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    if deepest > _MAX_NESTING:
        return f"nests tuples deeper than {_MAX_NESTING}"
    try:
        parsed = parse_type(kind)
        parsed.validate()
    except Exception as error:  # eth_abi's ParseError, ABITypeError, parsimonious' errors
        return f"is not an ABI type ({str(error)[:200]})"
    levels: list[tuple[ABIType, int]] = [(parsed, 1)]
    while levels:
        node, level = levels.pop()
        if level > _MAX_NESTING:
            return f"nests tuples and arrays deeper than {_MAX_NESTING}"
        if node.is_array:
            levels.append((node.item_type, level + 1))
        elif isinstance(node, TupleType):
            levels.extend((component, level + 1) for component in node.components)
    return None


def _convert(item: dict[str, Any], value: Any, where: str) -> Any:
    kind = str(item["type"])
    array = _ARRAY.match(kind)
    if array:
        if not isinstance(value, list):
            raise AbiError(where, f"expected a JSON array for {kind}")
        if array.group(2) and len(value) != int(array.group(2)):
            raise AbiError(where, f"{kind} needs exactly {array.group(2)} elements")
        inner = {**item, "type": array.group(1)}
        return [_convert(inner, element, f"{where}[{i}]") for i, element in enumerate(value)]
    if kind == "tuple":
        components: Sequence[dict[str, Any]] = item.get("components", [])
        if isinstance(value, dict):
            if not all(isinstance(c.get("name"), str) and c["name"] for c in components):
                raise AbiError(where, "the tuple's components have no names; give a JSON array")
            missing = [c["name"] for c in components if c["name"] not in value]
            if missing:
                raise AbiError(where, f"missing tuple fields {missing}")
            value = [value[c["name"]] for c in components]
        if not isinstance(value, list) or len(value) != len(components):
            raise AbiError(where, f"expected {len(components)} tuple fields")
        return tuple(
            _convert(c, v, f"{where}.{c.get('name') or i}")
            for i, (c, v) in enumerate(zip(components, value, strict=True))
        )
    integer = _INT.match(kind)
    if integer:
        return _integer(
            value,
            kind,
            unsigned=integer.group(1) == "u",
            bits=int(integer.group(2) or 256),
            where=where,
        )
    if kind == "address":
        return checksum(value, where)
    if kind == "bool":
        if not isinstance(value, bool):
            raise AbiError(where, "expected true or false")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise AbiError(where, "expected a string")
        return value
    if kind == "bytes" or _BYTES_N.match(kind):
        data = _hex_bytes(value, where)
        size = _BYTES_N.match(kind)
        if size and len(data) != int(size.group(1)):
            raise AbiError(where, f"{kind} needs exactly {size.group(1)} bytes, got {len(data)}")
        return data
    raise AbiError(where, f"type {kind} is not supported in json_args; use abi_encoded_args")


def _integer(value: Any, kind: str, *, unsigned: bool, bits: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AbiError(where, f"{kind} takes an integer or a decimal string")
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]+", value):
            raise AbiError(where, f"{value[:80]!r} is not a decimal integer")
        digits = value.lstrip("-").lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise AbiError(where, f"more than {_MAX_DIGITS} digits: out of range for {kind}")
        value = -int(digits) if value.startswith("-") else int(digits)
    assert isinstance(value, int)
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not low <= value <= high:
        raise AbiError(where, f"{value} is out of range for {kind}")
    return value


def _hex_bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise AbiError(where, "expected 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise AbiError(where, "expected 0x-prefixed hex") from None


def json_reason(error: BaseException) -> str:
    """Why ``json.loads`` refused: a decode error's message, or a number past the digit limit."""
    return error.msg if isinstance(error, json.JSONDecodeError) else str(error)


_ERROR_STRING = bytes.fromhex("08c379a0")
_PANIC = bytes.fromhex("4e487b71")


def decode_revert(data: bytes, errors: dict[bytes, tuple[str, list[str]]] | None = None) -> str:
    """A readable reason from revert data: Error(string), Panic(uint256), or a custom error."""
    if not data:
        return "reverted without a reason"
    selector, body = data[:4], data[4:]
    try:
        if selector == _ERROR_STRING:
            return str(abi_decode(["string"], body)[0])
        if selector == _PANIC:
            return f"panic 0x{abi_decode(['uint256'], body)[0]:02x}"
        if errors and selector in errors:
            name, types = errors[selector]
            values = abi_decode(types, body)
            return f"{name}({', '.join(_show(v) for v in values)})"
    except (DecodingError, ValueError):
        pass
    return f"reverted with data 0x{data.hex()}"


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
