"""Running the real helm binary against the chart, and reading what it renders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "chargenet"
EXAMPLES = ROOT / "helm" / "examples"
PRODUCTION_EXAMPLE = EXAMPLES / "production-two-cpos.yaml"
INSTALL_SCRIPT = ROOT / "scripts" / "helm" / "install.sh"

#: The Kubernetes versions the rendered manifests must validate against: the oldest the chart
#: supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ("1.29.0", "1.35.0")
#: The version helm renders for (Capabilities.KubeVersion); a current release.
RENDER_KUBE_VERSION = "1.35.0"
RELEASE = "chargenet"
NAMESPACE = "chargenet"

Manifest = dict[str, Any]


def find_helm() -> Path | None:
    """$HELM, else the binary scripts/helm/install.sh builds, else helm on PATH."""
    if os.environ.get("HELM"):
        return Path(os.environ["HELM"])
    cache = Path(os.environ.get("CHARGENET_CACHE", Path.home() / ".cache" / "chargenet"))
    built = cache / "bin" / "helm"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    found = shutil.which("helm")
    return Path(found) if found else None


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str) -> HelmResult:
        # A private HELM_* home: no repositories, plugins or caches of the machine leak in.
        home = ROOT / ".run" / "helm-home"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        done = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=120
        )
        return HelmResult(done.returncode, done.stdout, done.stderr)

    def lint(self, values: Sequence[Path] = (), *, strict: bool = True) -> HelmResult:
        args = ["lint", str(CHART), "--kube-version", RENDER_KUBE_VERSION]
        if strict:
            args.append("--strict")
        for path in values:
            args += ["--values", str(path)]
        return self.run(*args)

    def template(self, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> HelmResult:
        args = [
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            RENDER_KUBE_VERSION,
            # The CRDs the ServiceMonitor and PrometheusRule need, as a cluster with the
            # Prometheus Operator would announce them.
            "--api-versions",
            "monitoring.coreos.com/v1",
        ]
        for path in values:
            args += ["--values", str(path)]
        for item in sets:
            args += ["--set", item]
        return self.run(*args)

    def render(self, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[Manifest]:
        result = self.template(values, sets)
        if result.returncode != 0:
            raise AssertionError(f"helm template failed:\n{result.output}")
        return parse_manifests(result.stdout)


def parse_manifests(text: str) -> list[Manifest]:
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in documents:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise AssertionError(f"not a Kubernetes object: {str(doc)[:200]}")
    return documents


def name_of(manifest: Manifest) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


def of_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def pod_specs(manifests: Iterable[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, pod spec) of every workload."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield name_of(manifest), manifest["spec"]["template"]["spec"]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod_spec.get("initContainers", []) + pod_spec["containers"]
    return found


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}
