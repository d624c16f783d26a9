"""The Helm chart: lint, render, strict Kubernetes validation, and the conventions it promises."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings
from chargenet.escrow.settings import EscrowSettings
from chargenet.gateway.settings import GatewaySettings
from chargenet.invoicing.settings import InvoicingSettings
from chargenet.invoicing.suppliers import load_suppliers
from chargenet.registry.settings import RegistrySettings
from chargenet.signer.settings import SignerSettings
from chargenet.wallet.settings import WalletSettings
from tests.deploy.chart import (
    CHART,
    INSTALL_SCRIPT,
    KUBE_VERSIONS,
    NAMESPACE,
    PRODUCTION_EXAMPLE,
    Helm,
    Manifest,
    containers,
    env_of,
    name_of,
    of_kind,
    parse_manifests,
    pod_specs,
)

pytestmark = pytest.mark.helm

#: Kinds whose schemas come from a CRD, not from Kubernetes: checked structurally below.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
SERVICES = ("wallet", "registry", "escrow", "invoicing", "signer")
PRODUCTION_CPOS = ("ionity-de", "fastned-nl")


# --- lint and template -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [[], [PRODUCTION_EXAMPLE]], ids=["default-values", "production-two-cpos"]
)
def test_helm_lint_passes_strictly(helm: Helm, values: list[Path]) -> None:
    result = helm.lint(values)
    assert result.returncode == 0, result.output
    assert "1 chart(s) linted, 0 chart(s) failed" in result.output


def test_default_values_render_every_service(default_manifests: list[Manifest]) -> None:
    names = {name_of(m) for m in default_manifests}
    for service in SERVICES:
        assert f"Deployment/chargenet-{service}" in names
        assert f"Service/chargenet-{service}" in names
    assert "Deployment/chargenet-gateway-cpo-example" in names
    # Monitoring CRDs are off by default: the chart installs on a cluster without them.
    assert not CRD_KINDS & {m["kind"] for m in default_manifests}


def test_production_suppliers_reach_invoicing_and_pass_its_checks(
    production_manifests: list[Manifest], default_manifests: list[Manifest], tmp_path: Path
) -> None:
    suppliers = next(
        m
        for m in of_kind(production_manifests, "ConfigMap")
        if m["metadata"]["name"].endswith("-invoicing-suppliers")
    )
    # The service's own start-up validation accepts what the chart renders, for every CPO.
    rendered = tmp_path / "suppliers.json"
    rendered.write_text(suppliers["data"]["suppliers.json"])
    assert sorted(load_suppliers(rendered)) == sorted(PRODUCTION_CPOS)
    invoicing = next(
        m for m in of_kind(production_manifests, "Deployment") if name_of(m).endswith("-invoicing")
    )
    pod = invoicing["spec"]["template"]["spec"]
    path = env_of(pod["containers"][0])["CHARGENET_INVOICING_SUPPLIERS_FILE"]["value"]
    mount = next(v for v in pod["containers"][0]["volumeMounts"] if v["name"] == "suppliers")
    assert Path(path).parent == Path(mount["mountPath"])
    volume = next(v for v in pod["volumes"] if v["name"] == "suppliers")
    assert volume["configMap"]["name"] == suppliers["metadata"]["name"]
    # Without suppliers nothing is rendered or mounted (the service then refuses settlements).
    assert not [
        m for m in of_kind(default_manifests, "ConfigMap") if "suppliers" in m["metadata"]["name"]
    ]


def test_production_example_renders_one_gateway_per_cpo(
    production_manifests: list[Manifest],
) -> None:
    gateways = [
        m
        for m in of_kind(production_manifests, "Deployment")
        if m["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    assert sorted(m["metadata"]["labels"]["chargenet.io/cpo"] for m in gateways) == sorted(
        PRODUCTION_CPOS
    )
    hpas = {
        m["spec"]["scaleTargetRef"]["name"]
        for m in of_kind(production_manifests, "HorizontalPodAutoscaler")
    }
    pdbs = {m["metadata"]["name"] for m in of_kind(production_manifests, "PodDisruptionBudget")}
    for gateway in gateways:
        name = gateway["metadata"]["name"]
        assert name in hpas, f"{name} has no HorizontalPodAutoscaler"
        assert name in pdbs, f"{name} has no PodDisruptionBudget"
        # The HPA owns the replica count; a replicas field would fight it on every upgrade.
        assert "replicas" not in gateway["spec"]
        pod = gateway["spec"]["template"]["spec"]
        env = env_of(pod["containers"][0])
        assert env["CHARGENET_CPO_ID"]["value"] in PRODUCTION_CPOS
        cpo = env["CHARGENET_CPO_ID"]["value"]
        credentials = next(v for v in pod["volumes"] if v["name"] == "charge-points")
        assert credentials["secret"]["secretName"] == f"{cpo}-charge-points"
        # A gateway keeps no database: neither it nor its check gets a DSN.
        for container in containers(pod):
            assert "CHARGENET_DATABASE_URL" not in env_of(container), f"{name} {container['name']}"
    profiles = {
        env_of(g["spec"]["template"]["spec"]["containers"][0])["CHARGENET_CPO_ID"]["value"]: env_of(
            g["spec"]["template"]["spec"]["containers"][0]
        )["CHARGENET_SECURITY_PROFILE"]["value"]
        for g in gateways
    }
    assert profiles == {"ionity-de": "2", "fastned-nl": "3"}


def test_helm_is_the_pinned_release(helm: Helm) -> None:
    pinned = re.search(r'HELM_VERSION="\$\{HELM_VERSION:-(v[0-9.]+)\}"', INSTALL_SCRIPT.read_text())
    assert pinned, "scripts/helm/install.sh pins no version"
    result = helm.run("version", "--template", "{{.Version}}")
    assert result.stdout.strip() == pinned.group(1)


# --- strict Kubernetes validation ------------------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]  # ships no type hints
    except ImportError:
        from tests.deploy.conftest import missing

        missing("kubernetes-validate is not installed (a dev dependency of the workspace)")
    return kubernetes_validate


@pytest.mark.parametrize("kube_version", [*KUBE_VERSIONS, "newest"])
@pytest.mark.parametrize("which", ["default", "production"])
def test_every_manifest_validates_strictly(
    kubernetes_validate: Any,
    default_manifests: list[Manifest],
    production_manifests: list[Manifest],
    which: str,
    kube_version: str,
) -> None:
    if kube_version == "newest":
        kube_version = f"{kubernetes_validate.latest_version()}.0"
    manifests = default_manifests if which == "default" else production_manifests
    checked, failures = 0, []
    for manifest in manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            failures.append(f"{name_of(manifest)}: {path}: {error.message}")
    assert not failures, "\n".join(failures)
    assert checked == len([m for m in manifests if m["kind"] not in CRD_KINDS]) > 20


def test_the_strict_validation_catches_an_unknown_field(
    kubernetes_validate: Any, default_manifests: list[Manifest]
) -> None:
    """The check above is only worth something if a misplaced field fails it."""
    deployment = json.loads(json.dumps(of_kind(default_manifests, "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    "sets",
    [
        [
            "networkPolicy.enabled=false",
            "migrations.enabled=false",
            "dependencyCheck.enabled=false",
        ],
        [
            "signer.enabled=false",
            "services.invoicing.enabled=false",
            "metrics.dashboard.enabled=false",
        ],
        ["serviceAccount.create=false", "serviceAccount.name=chargenet-runtime"],
        [
            "gateway.defaults.autoscaling.enabled=false",
            "gateway.defaults.podDisruptionBudget.enabled=false",
        ],
        [
            "chain.existingSecret=rpc",
            "image.digest=sha256:" + "a" * 64,
            "networkPolicy.egress.enabled=true",
        ],
        [
            "services.wallet.signerClient=false",
            "services.registry.signerClient=false",
            "services.escrow.signerClient=false",
        ],
    ],
    ids=[
        "no-policies-hooks-checks",
        "no-signer",
        "existing-sa",
        "fixed-gateways",
        "pinned",
        "no-signer-clients",
    ],
)
def test_switches_render_valid_manifests(
    helm: Helm, kubernetes_validate: Any, sets: list[str]
) -> None:
    manifests = helm.render(sets=sets)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBE_VERSIONS[-1], strict=True)
    names = {name_of(m) for m in manifests}
    if "signer.enabled=false" in sets:
        assert "Deployment/chargenet-signer" not in names
        assert "Job/chargenet-migrate-signer" not in names
    if "serviceAccount.create=false" in sets:
        assert not of_kind(manifests, "ServiceAccount")
        for _, pod in pod_specs(manifests):
            assert pod["serviceAccountName"] == "chargenet-runtime"
    if "image.digest=sha256:" + "a" * 64 in sets:
        images = {c["image"] for _, pod in pod_specs(manifests) for c in containers(pod)}
        assert images == {"ghcr.io/chargenet/chargenet@sha256:" + "a" * 64}
    if "gateway.defaults.autoscaling.enabled=false" in sets:
        assert not of_kind(manifests, "HorizontalPodAutoscaler")
        assert not of_kind(manifests, "PodDisruptionBudget")


def test_monitoring_resources_are_well_formed(production_manifests: list[Manifest]) -> None:
    """ServiceMonitor and PrometheusRule come from CRDs kubernetes-validate does not know."""
    (monitor,) = of_kind(production_manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s
        for s in of_kind(production_manifests, "Service")
        if selector.items() <= s["metadata"]["labels"].items()
        and any(p["name"] == "http" for p in s["spec"]["ports"])
    ]
    # Every Deployment's Service exposes the port the ServiceMonitor scrapes.
    assert len(scraped) == len(of_kind(production_manifests, "Deployment"))
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
        assert endpoint["port"] == "http"
        assert endpoint["path"] == "/metrics"
        for relabel in endpoint["relabelings"]:
            assert set(relabel) <= {"sourceLabels", "targetLabel", "action", "regex", "replacement"}

    (rule,) = of_kind(production_manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "ChargenetEscrowSettlementLag",
        "ChargenetRegistryIndexerLag",
        "ChargenetGatewayDisconnectRate",
    }
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert["alert"]
        assert isinstance(alert["expr"], str) and alert["expr"].strip()
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        # Scoped to the release's namespace: two installs never alert on each other's series.
        assert f'namespace="{NAMESPACE}"' in alert["expr"], alert["alert"]


# --- the conventions the chart promises ------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_pod_is_hardened(
    default_manifests: list[Manifest], production_manifests: list[Manifest], which: str
) -> None:
    manifests = default_manifests if which == "default" else production_manifests
    pods = list(pod_specs(manifests))
    # A Deployment per service and gateway, a migration Job per service (a gateway has none).
    assert len(pods) >= 11
    for name, pod in pods:
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp, name
        for container in containers(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name


def test_probes(default_manifests: list[Manifest]) -> None:
    # Over HTTP everywhere: the signer serves TLS on its gRPC port, and the kubelet's gRPC probes
    # speak plaintext (tests/deploy: test_the_signer_serves_tls_and_its_clients_trust_only_its_ca).
    for manifest in of_kind(default_manifests, "Deployment"):
        (container,) = manifest["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_the_signer_serves_tls_and_its_clients_trust_only_its_ca(
    default_manifests: list[Manifest], helm: Helm
) -> None:
    deployments = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["template"]["spec"]
        for m in of_kind(default_manifests, "Deployment")
    }
    (signer,) = deployments["signer"]["containers"]
    env = env_of(signer)
    assert env["CHARGENET_SIGNER_TLS_CERT_FILE"]["value"] == "/etc/chargenet/signer-tls/tls.crt"
    assert env["CHARGENET_SIGNER_TLS_KEY_FILE"]["value"] == "/etc/chargenet/signer-tls/tls.key"
    (tls,) = [v for v in deployments["signer"]["volumes"] if v["name"] == "signer-tls"]
    assert tls["secret"]["secretName"] == "chargenet-signer-tls"
    for component in ("wallet", "registry", "escrow"):  # signerClient: true
        (container,) = deployments[component]["containers"]
        ca_file = env_of(container)["CHARGENET_SIGNER_CA_FILE"]["value"]
        assert ca_file == "/etc/chargenet/signer-ca/ca.crt", component
        (ca,) = [v for v in deployments[component]["volumes"] if v["name"] == "signer-ca"]
        # Only the CA certificate: the signer's private key never reaches a client's pod.
        assert ca["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], component
    (invoicing,) = deployments["invoicing"]["containers"]
    assert "CHARGENET_SIGNER_CA_FILE" not in env_of(invoicing)
    # Plaintext: only outside production mode, and then the gRPC health probes.
    refused = helm.template(sets=["signer.tls.enabled=false"])
    assert refused.returncode != 0 and "signer.tls.enabled" in refused.output
    plain = helm.render(sets=["signer.tls.enabled=false", "config.mode=development"])
    (signer_pod,) = [
        spec for name, spec in pod_specs(plain) if name == "Deployment/chargenet-signer"
    ]
    (container,) = signer_pod["containers"]
    assert container["readinessProbe"]["grpc"] == {
        "port": 50051,
        "service": "chargenet.signer.v1.SignerService",
    }
    assert "CHARGENET_SIGNER_TLS_CERT_FILE" not in env_of(container)


def test_kafka_over_tls_with_credentials_reaches_every_bus_user(helm: Helm) -> None:
    manifests = helm.render(
        sets=[
            "kafka.securityProtocol=SASL_SSL",
            "kafka.tls.caSecret=kafka-ca",
            "kafka.tls.clientSecret=kafka-client",
            "kafka.sasl.existingSecret=kafka-user",
            "services.escrow.kafkaSecret=kafka-escrow",  # one service's own Kafka user
        ]
    )
    (config,) = [m for m in of_kind(manifests, "ConfigMap") if name_of(m).endswith("-config")]
    shared = config["data"]
    assert shared["CHARGENET_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert shared["CHARGENET_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    pods = dict(pod_specs(manifests))
    # What reaches Kafka: the bus users (every service but the signer) and every `check`.
    reaching = [
        (name, container)
        for name, pod in pods.items()
        if name.startswith("Deployment/")
        for container in containers(pod)
        if container["name"] == "check" or not name.endswith("-signer")
    ]
    assert len(reaching) == 11, [n for n, _ in reaching]  # 5 bus users + 6 checks
    for name, pod in pods.items():
        user = "kafka-escrow" if name.endswith("-escrow") else "kafka-user"  # migrate-escrow too
        for container in containers(pod):
            env = env_of(container)
            for variable, key in (("USERNAME", "username"), ("PASSWORD", "password")):
                ref = env[f"CHARGENET_KAFKA_SASL_{variable}"]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": user, "key": key}, name
    for name, container in reaching:
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert Path(shared["CHARGENET_KAFKA_SSL_CA_FILE"]).parent == Path(mounts["kafka-ca"])
        assert Path(shared["CHARGENET_KAFKA_SSL_KEY_FILE"]).parent == Path(mounts["kafka-client"])
        volumes = {v["name"]: v["secret"] for v in pods[name]["volumes"] if "secret" in v}
        assert volumes["kafka-ca"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], name
        assert volumes["kafka-client"]["secretName"] == "kafka-client", name
    # What the chart renders passes the services' own start-up validation.
    kafka = {
        name.removeprefix("CHARGENET_").lower(): value
        for name, value in shared.items()
        if name.startswith("CHARGENET_KAFKA_")
    }
    settings = CoreSettings(**kafka, kafka_sasl_username="u", kafka_sasl_password="p")
    assert settings.kafka_ssl_ca_file == Path("/etc/chargenet/kafka-ca/ca.crt")


@pytest.mark.parametrize(
    ("sets", "named"),
    [
        (
            ["kafka.securityProtocol=SASL_SSL"],
            "kafka.sasl.existingSecret (or each component's kafkaSecret) is required",
        ),
        (["kafka.tls.caSecret=kafka-ca"], "kafka.tls: its Secrets need"),
        (
            [
                "kafka.securityProtocol=SASL_PLAINTEXT",
                "kafka.sasl.mechanism=PLAIN",
                "kafka.sasl.existingSecret=kafka-user",
            ],
            "PLAIN without TLS is refused in production",
        ),
    ],
    ids=["sasl-without-secret", "tls-files-on-plaintext", "plain-password-in-clear"],
)
def test_kafka_settings_that_cannot_work_are_refused(
    helm: Helm, sets: list[str], named: str
) -> None:
    refused = helm.template(sets=sets)
    assert refused.returncode != 0 and named in refused.output


def test_every_service_pod_checks_its_dependencies_first(default_manifests: list[Manifest]) -> None:
    for manifest in of_kind(default_manifests, "Deployment"):
        pod = manifest["spec"]["template"]["spec"]
        (check,) = pod["initContainers"]
        (service,) = pod["containers"]
        assert check["args"] == ["check"]
        # The service's core settings: what check validates is what the service gets. (The
        # signer's own key material stays out of the check container.)
        assert check["envFrom"] == service["envFrom"][: len(check["envFrom"])]
        for variable in ("CHARGENET_DATABASE_URL", "CHARGENET_SIGNER_TOKEN"):
            assert env_of(check).get(variable) == env_of(service).get(variable), name_of(manifest)
        gateway = manifest["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
        # Every service but the gateway, which keeps none, checks its database.
        assert ("CHARGENET_DATABASE_URL" in env_of(check)) is not gateway, name_of(manifest)


def test_signer_runs_exactly_one_replica(production_manifests: list[Manifest]) -> None:
    (signer,) = [
        m
        for m in of_kind(production_manifests, "Deployment")
        if m["metadata"]["name"].endswith("-signer")
    ]
    assert signer["spec"]["replicas"] == 1
    assert signer["spec"]["strategy"] == {"type": "Recreate"}


def test_labels_follow_the_helm_conventions(production_manifests: list[Manifest]) -> None:
    required = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    }
    for manifest in production_manifests:
        labels = manifest["metadata"]["labels"]
        assert required <= set(labels), name_of(manifest)
    for manifest in of_kind(production_manifests, "Deployment"):
        selector = manifest["spec"]["selector"]["matchLabels"]
        pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        # Selectors are immutable: nothing that changes between releases may be in them.
        assert not {"app.kubernetes.io/version", "helm.sh/chart"} & set(selector)


def test_secrets_are_referenced_never_inlined(production_manifests: list[Manifest]) -> None:
    assert not of_kind(production_manifests, "Secret"), "the chart must not create Secrets"
    secret_names = {"CHARGENET_DATABASE_URL", "CHARGENET_SIGNER_TOKEN", "CHARGENET_CHAIN_RPC_URL"}
    for name, pod in pod_specs(production_manifests):
        for container in containers(pod):
            env = env_of(container)
            for variable in secret_names & set(env):
                assert "secretKeyRef" in env[variable].get("valueFrom", {}), f"{name} {variable}"
            for variable, item in env.items():
                if any(word in variable for word in ("TOKEN", "PASSWORD", "MNEMONIC", "KEYS")):
                    assert "value" not in item, f"{name}: {variable} is inlined"
    for config in of_kind(production_manifests, "ConfigMap"):
        for key in config["data"]:
            assert not any(w in key for w in ("TOKEN", "PASSWORD", "DATABASE_URL")), key


def test_migrations_run_as_hooks_before_the_workloads(production_manifests: list[Manifest]) -> None:
    jobs = of_kind(production_manifests, "Job")
    migrated = sorted(job["spec"]["template"]["spec"]["containers"][0]["args"][1] for job in jobs)
    # One Job per service database; the gateways keep none.
    assert migrated == sorted(SERVICES)
    assert not [j for j in jobs if "gateway" in j["metadata"]["name"]]
    for job in jobs:
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0] == "migrate"
        env = env_of(container)
        # Hooks run before the ConfigMap exists: the settings must be inline.
        assert "envFrom" not in container
        assert env["CHARGENET_MODE"]["value"] == "production"
        assert "secretKeyRef" in env["CHARGENET_DATABASE_URL"]["valueFrom"]


def test_network_policies_isolate_the_signer(production_manifests: list[Manifest]) -> None:
    policies = {m["metadata"]["name"]: m for m in of_kind(production_manifests, "NetworkPolicy")}
    deployments = of_kind(production_manifests, "Deployment")
    # Every workload is selected by a policy of its own besides the default one.
    assert {d["metadata"]["name"] for d in deployments} <= set(policies)
    signer = policies["chargenet-signer"]["spec"]["ingress"]
    grpc_rule = next(r for r in signer if r["ports"][0]["port"] == "grpc")
    (peer,) = grpc_rule["from"]
    allowed = next(
        e["values"]
        for e in peer["podSelector"]["matchExpressions"]
        if e["key"] == "app.kubernetes.io/component"
    )
    assert sorted(allowed) == ["escrow", "registry", "wallet"]
    default = policies["chargenet-default"]["spec"]
    assert default["policyTypes"] == ["Ingress", "Egress"]


def test_dashboard_is_valid_grafana_json(production_manifests: list[Manifest]) -> None:
    (config,) = [
        m
        for m in of_kind(production_manifests, "ConfigMap")
        if "dashboard" in m["metadata"]["name"]
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["chargenet.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "chargenet.json").read_text())
    titles = {p["title"] for p in dashboard["panels"] if p["type"] == "row"}
    assert titles == {"Sessions", "Settlement", "Gas", "Gateway connections", "Message rates"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"])


def test_install_notes_render_and_name_every_secret(helm: Helm, tmp_path: Path) -> None:
    """NOTES.txt is rendered only by a real install: render it here through a ConfigMap."""
    chart = tmp_path / "chargenet"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    result = helm.run(
        "template",
        "chargenet",
        str(chart),
        "--values",
        str(PRODUCTION_EXAMPLE),
        "--show-only",
        "templates/notes.yaml",
    )
    assert result.returncode == 0, result.output
    notes = parse_manifests(result.stdout)[0]["data"]["notes"]
    for secret in (
        "chargenet-database",
        "chargenet-signer-tokens",
        "chargenet-user-auth",
        "chargenet-signer",
        "chargenet-signer-tls",
        "ionity-de-charge-points",
        "ionity-de-ocpp-tls",
        "fastned-nl-charge-points",
    ):
        assert secret in notes, secret
    assert "gateway-fastned-nl-database-url" not in notes  # a gateway keeps no database
    assert "fastned-nl: wss, Service chargenet-gateway-fastned-nl-ocpp, port 9000" in notes


def test_every_secret_production_refuses_by_default_comes_from_a_secret(
    default_manifests: list[Manifest], production_manifests: list[Manifest]
) -> None:
    """Production mode refuses the development default of a secret setting: the chart must give
    each such setting of each service a value from a Secret, or the pod never starts."""
    settings_of: dict[str, type[CoreSettings]] = {
        "wallet": WalletSettings,
        "registry": RegistrySettings,
        "escrow": EscrowSettings,
        "invoicing": InvoicingSettings,
        "signer": SignerSettings,
        "gateway": GatewaySettings,
    }
    checked = set()
    for manifests in (default_manifests, production_manifests):
        for workload in of_kind(manifests, "Deployment") + of_kind(manifests, "StatefulSet"):
            component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
            container = workload["spec"]["template"]["spec"]["containers"][0]
            env = env_of(container)
            for field, info in settings_of[component].model_fields.items():
                if info.default != SecretStr(DEVELOPMENT_SECRET):
                    continue
                variable = f"CHARGENET_{field.upper()}"
                assert "secretKeyRef" in env.get(variable, {}).get("valueFrom", {}), (
                    f"{name_of(workload)}: {variable} does not come from a Secret"
                )
                checked.add((component, field))
    assert ("wallet", "wallet_jwt_secret") in checked and ("gateway", "signer_token") in checked
