"""values.schema.json: the shipped values pass, and typos and wrong types fail before any render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, EXAMPLES, Helm

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_FILES = [CHART / "values.yaml", *sorted(EXAMPLES.glob("*.yaml"))]

#: (id, values that must be refused, text helm's error must contain)
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    (
        "typo-in-a-service",
        {"services": {"wallet": {"replicaCont": 3}}},
        "additional properties 'replicaCont' not allowed",
    ),
    (
        "typo-at-the-top",
        {"networkPolicies": {"enabled": False}},
        "additional properties 'networkPolicies' not allowed",
    ),
    (
        "typo-in-a-cpo",
        {"gateway": {"cpos": [{"id": "cpo-a", "credentialSecret": {"name": "s", "key": "k"}}]}},
        "credentialSecret",
    ),
    (
        "cpo-id-not-a-dns-label",
        {"gateway": {"cpos": [{"id": "CPO_A", "credentialsSecret": {"name": "s", "key": "k"}}]}},
        "/gateway/cpos/0/id",
    ),
    ("wrong-type", {"kafka": {"partitions": "eight"}}, "/kafka/partitions"),
    ("bad-mode", {"config": {"mode": "prod"}}, "/config/mode"),
    ("env-without-prefix", {"config": {"extraEnv": {"DATABASE_URL": "x"}}}, "'DATABASE_URL'"),
]


def validator() -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    return jsonschema.Draft7Validator(SCHEMA)


def test_schema_closes_every_object() -> None:
    """Every object with declared properties refuses undeclared ones: that is what catches typos."""
    open_objects: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(SCHEMA, "#")
    assert not open_objects, open_objects


@pytest.mark.parametrize("path", VALUES_FILES, ids=lambda p: p.name)
def test_shipped_values_files_pass_the_schema(path: Path) -> None:
    # Helm validates the defaults with the given files merged over them.
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    values = _merge(defaults, yaml.safe_load(path.read_text()))
    errors = sorted(validator().iter_errors(values), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("values", "expected"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES]
)
def test_schema_refuses_bad_values(values: dict[str, Any], expected: str) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = _merge(defaults, values)
    assert list(validator().iter_errors(merged)), f"accepted: {values}"


@pytest.mark.helm
@pytest.mark.parametrize(
    ("values", "expected"), [b[1:] for b in BAD_VALUES], ids=[b[0] for b in BAD_VALUES]
)
def test_helm_refuses_bad_values(
    helm: Helm, tmp_path: Path, values: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    for result in (helm.lint([path]), helm.template([path])):
        assert result.returncode != 0, result.output
        assert "values don't meet the specifications of the schema" in result.output
        assert expected in result.output, result.output


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge: maps merge key by key, anything else (lists too) replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
