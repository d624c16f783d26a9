"""skaffold.yaml: valid against skaffold's v4beta14 schema; its profiles deploy what they say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import best_match

from tests.deploy.chart import ROOT, Helm, env_of, of_kind

SKAFFOLD = ROOT / "skaffold.yaml"
#: A copy of skaffold's published schema, kept beside the project (../shared/schemas).
SCHEMA = ROOT.parent / "shared" / "schemas" / "skaffold-v4beta14.json"


@pytest.fixture(scope="module")
def skaffold_schema() -> jsonschema.Draft7Validator:
    if not SCHEMA.is_file():
        pytest.skip(f"skaffold schema not found at {SCHEMA}: the check needs ../shared/schemas")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return loaded


def test_skaffold_yaml_validates_against_the_v4beta14_schema(
    skaffold_schema: jsonschema.Draft7Validator, config: dict[str, Any]
) -> None:
    assert config["apiVersion"] == "skaffold/v4beta14"
    error = best_match(skaffold_schema.iter_errors(config))
    assert error is None, f"{'/'.join(map(str, error.path))}: {error.message}"


def test_the_schema_check_catches_a_misspelt_field(
    skaffold_schema: jsonschema.Draft7Validator, config: dict[str, Any]
) -> None:
    broken = json.loads(json.dumps(config))
    broken["deploy"]["helm"]["releases"][0]["chartPth"] = "helm/chargenet"
    assert best_match(skaffold_schema.iter_errors(broken)) is not None


def _profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    profile: dict[str, Any] = next(p for p in config["profiles"] if p["name"] == name)
    return profile


def _values_files(config: dict[str, Any], *profiles: str) -> list[Path]:
    """The release's values files after the profiles' patches, as skaffold applies them."""
    files = list(config["deploy"]["helm"]["releases"][0].get("valuesFiles", []))
    for name in profiles:
        for patch in _profile(config, name).get("patches", []):
            assert patch["op"] == "add"
            assert patch["path"] == "/deploy/helm/releases/0/valuesFiles/-"
            files.append(patch["value"])
    return [ROOT / f for f in files]


def test_the_image_skaffold_builds_is_the_one_the_chart_deploys(config: dict[str, Any]) -> None:
    (artifact,) = config["build"]["artifacts"]
    (release,) = config["deploy"]["helm"]["releases"]
    image = artifact["image"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
    target = artifact["docker"]["target"]
    dockerfile = (ROOT / artifact["docker"]["dockerfile"]).read_text()
    assert f"FROM python:${{PYTHON_VERSION}}-slim-${{DEBIAN_RELEASE}} AS {target}" in dockerfile
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{image}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{image}}}}}",
    }


@pytest.mark.helm
def test_dev_profile_renders_one_gateway(helm: Helm, config: dict[str, Any]) -> None:
    manifests = helm.render(_values_files(config, "dev"), sets=["image.tag=dev"])
    gateways = [
        m for m in of_kind(manifests, "Deployment") if "chargenet.io/cpo" in m["metadata"]["labels"]
    ]
    assert [g["spec"]["replicas"] for g in gateways] == [1]
    assert not of_kind(manifests, "HorizontalPodAutoscaler")
    ports = {(p["resourceName"], p["port"]) for p in _profile(config, "dev")["portForward"]}
    services = {s["metadata"]["name"] for s in of_kind(manifests, "Service")}
    assert {name for name, _ in ports} <= services


@pytest.mark.helm
def test_second_cpo_profile_adds_a_second_gateway(helm: Helm, config: dict[str, Any]) -> None:
    manifests = helm.render(_values_files(config, "dev", "second-cpo"), sets=["image.tag=dev"])
    cpos = sorted(
        env_of(m["spec"]["template"]["spec"]["containers"][0])["CHARGENET_CPO_ID"]["value"]
        for m in of_kind(manifests, "Deployment")
        if "chargenet.io/cpo" in m["metadata"]["labels"]
    )
    assert cpos == ["cpo-dev", "cpo-two"]
    # The gateways keep no database: no migration Job for either CPO.
    migrations = [
        j["metadata"]["name"]
        for j in of_kind(manifests, "Job")
        if "gateway" in j["metadata"]["name"]
    ]
    assert migrations == []
