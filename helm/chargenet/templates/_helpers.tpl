{{/*
Expand the name of the chart.
*/}}
{{- define "chargenet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name. Truncated at 63 characters because some Kubernetes
name fields are limited to this (by the DNS naming spec). If the release name contains the chart
name it is used as the full name.
*/}}
{{- define "chargenet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "chargenet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "chargenet.labels" -}}
helm.sh/chart: {{ include "chargenet.chart" . }}
{{ include "chargenet.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chargenet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "chargenet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chargenet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
A component's resource name: "<fullname>-<component>" (component: wallet, gateway-<cpo>, ...).
Call with (dict "root" $ "component" "wallet").
*/}}
{{- define "chargenet.componentName" -}}
{{- printf "%s-%s" (include "chargenet.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of one component's resources. Call with (dict "root" $ "component" "gateway" "cpo" "x");
"cpo" is only given for a gateway.
*/}}
{{- define "chargenet.componentLabels" -}}
{{ include "chargenet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .cpo }}
chargenet.io/cpo: {{ . }}
{{- end }}
{{- end }}

{{/*
Selector labels of one component (same arguments as chargenet.componentLabels).
*/}}
{{- define "chargenet.componentSelectorLabels" -}}
{{ include "chargenet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- with .cpo }}
chargenet.io/cpo: {{ . }}
{{- end }}
{{- end }}

{{/*
The name of the service account to use.
*/}}
{{- define "chargenet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chargenet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: a digest pins it; the tag defaults to the chart's appVersion.
*/}}
{{- define "chargenet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Names of the Secrets the chart references (it never creates them).
*/}}
{{- define "chargenet.databaseSecretName" -}}
{{- default (printf "%s-database" (include "chargenet.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "chargenet.signerTokensSecretName" -}}
{{- default (printf "%s-signer-tokens" (include "chargenet.fullname" .)) .Values.signerAuth.existingSecret }}
{{- end }}

{{- define "chargenet.userAuthSecretName" -}}
{{- default (printf "%s-user-auth" (include "chargenet.fullname" .)) .Values.userAuth.existingSecret }}
{{- end }}

{{- define "chargenet.signerSecretName" -}}
{{- default (printf "%s-signer" (include "chargenet.fullname" .)) .Values.signer.existingSecret }}
{{- end }}

{{- define "chargenet.signerTlsSecretName" -}}
{{- default (printf "%s-signer-tls" (include "chargenet.fullname" .)) .Values.signer.tls.secret }}
{{- end }}

{{- define "chargenet.suppliersName" -}}
{{- printf "%s-invoicing-suppliers" (include "chargenet.fullname" .) }}
{{- end }}

{{- define "chargenet.configName" -}}
{{- printf "%s-config" (include "chargenet.fullname" .) }}
{{- end }}

{{/*
CHARGENET_DATABASE_URL from a Secret. Call with (dict "root" $ "ref" .databaseSecret "key" "wallet-database-url").
*/}}
{{- define "chargenet.databaseEnv" -}}
- name: CHARGENET_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "chargenet.databaseSecretName" .root) .ref.name }}
      key: {{ default .key .ref.key }}
{{- end }}

{{/*
Environment every container of the chart gets besides the shared ConfigMap: the secret RPC URL.
*/}}
{{- define "chargenet.secretEnv" -}}
{{- if .Values.chain.existingSecret }}
- name: CHARGENET_CHAIN_RPC_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.chain.existingSecret }}
      key: {{ .Values.chain.existingSecretKey }}
{{- end }}
{{- end }}

{{/*
The Kafka credentials with a SASL kafka.securityProtocol, in every container (the settings refuse
a SASL protocol without them): the component's own `kafkaSecret` (one Kafka user per service, for
topic ACLs) or kafka.sasl.existingSecret. Call with (dict "root" $ "secret" $cfg.kafkaSecret).
*/}}
{{- define "chargenet.kafkaCredentialsEnv" -}}
{{- if hasPrefix "SASL_" .root.Values.kafka.securityProtocol }}
{{- $secret := default .root.Values.kafka.sasl.existingSecret .secret }}
{{- if not $secret }}
{{- fail "kafka.sasl.existingSecret (or each component's kafkaSecret) is required with a SASL kafka.securityProtocol" }}
{{- end }}
- name: CHARGENET_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: username
- name: CHARGENET_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- end }}
{{- end }}

{{/*
The Kafka security settings of the shared configuration (kafka.securityProtocol, kafka.tls,
kafka.sasl); chargenet.kafkaTlsMount mounts the files in every container that reaches Kafka: the
bus users and every pod's `check` init container.
*/}}
{{- define "chargenet.kafkaSecurityConfig" -}}
{{- $kafka := .Values.kafka }}
{{- $tls := or (eq $kafka.securityProtocol "SSL") (eq $kafka.securityProtocol "SASL_SSL") }}
{{- if and (not $tls) (or $kafka.tls.caSecret $kafka.tls.clientSecret) }}
{{- fail "kafka.tls: its Secrets need kafka.securityProtocol SSL or SASL_SSL" }}
{{- end }}
{{- if and (eq .Values.config.mode "production") (eq $kafka.securityProtocol "SASL_PLAINTEXT") (eq $kafka.sasl.mechanism "PLAIN") }}
{{- fail "kafka.sasl.mechanism PLAIN without TLS is refused in production mode: use SASL_SSL or SCRAM" }}
{{- end }}
CHARGENET_KAFKA_SECURITY_PROTOCOL: {{ $kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
CHARGENET_KAFKA_SASL_MECHANISM: {{ $kafka.sasl.mechanism | quote }}
{{- end }}
{{- if $kafka.tls.caSecret }}
CHARGENET_KAFKA_SSL_CA_FILE: "/etc/chargenet/kafka-ca/ca.crt"
{{- end }}
{{- if $kafka.tls.clientSecret }}
CHARGENET_KAFKA_SSL_CERT_FILE: "/etc/chargenet/kafka-client/tls.crt"
CHARGENET_KAFKA_SSL_KEY_FILE: "/etc/chargenet/kafka-client/tls.key"
{{- end }}
{{- end }}

{{- define "chargenet.kafkaTlsMount" -}}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/chargenet/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.clientSecret }}
- name: kafka-client
  mountPath: /etc/chargenet/kafka-client
  readOnly: true
{{- end }}
{{- end }}

{{- define "chargenet.kafkaTlsVolume" -}}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if .Values.kafka.tls.clientSecret }}
- name: kafka-client
  secret:
    secretName: {{ .Values.kafka.tls.clientSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{/*
The signer token of one service (key: the service name). Production mode refuses the development
token in every service's core settings, so every container gets one, whether it calls the signer
or not. Call with (dict "root" $ "service" "wallet").
*/}}
{{- define "chargenet.signerTokenEnv" -}}
- name: CHARGENET_SIGNER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "chargenet.signerTokensSecretName" .root }}
      key: {{ .service }}
{{- end }}

{{/*
TLS to the signer for a service that calls it (signer.tls): the CA certificate only, so the
signer's private key never reaches another pod. Env, mount and volume.
*/}}
{{- define "chargenet.signerCaEnv" -}}
{{- if .Values.signer.tls.enabled }}
- name: CHARGENET_SIGNER_CA_FILE
  value: /etc/chargenet/signer-ca/ca.crt
{{- end }}
{{- end }}

{{- define "chargenet.signerCaMount" -}}
{{- if .Values.signer.tls.enabled }}
- name: signer-ca
  mountPath: /etc/chargenet/signer-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "chargenet.signerCaVolume" -}}
{{- if .Values.signer.tls.enabled }}
- name: signer-ca
  secret:
    secretName: {{ include "chargenet.signerTlsSecretName" . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{/*
The key that signs and checks a service's user tokens (wallet, registry, invoicing; key
"<service>-jwt-secret"). Production mode refuses the development default. Call with
(dict "root" $ "service" "wallet").
*/}}
{{- define "chargenet.userAuthEnv" -}}
- name: CHARGENET_{{ upper .service }}_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "chargenet.userAuthSecretName" .root }}
      key: {{ .service }}-jwt-secret
{{- end }}

{{/*
Pod annotations that roll the pods when the shared configuration changes.
*/}}
{{- define "chargenet.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/*
The /tmp emptyDir every pod mounts (the root filesystem is read-only).
*/}}
{{- define "chargenet.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "chargenet.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/*
HTTP probes on /healthz (startup, liveness) and /readyz (readiness), on the port named "http".
*/}}
{{- define "chargenet.httpProbes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .Values.probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml .Values.probes.readiness | nindent 2 }}
{{- end }}

{{/*
The settings every service shares, as a map: rendered into the ConfigMap for the Deployments and
inline into the migration Jobs (hooks run before the ConfigMap exists).
*/}}
{{- define "chargenet.sharedConfig" -}}
CHARGENET_MODE: {{ .Values.config.mode | quote }}
CHARGENET_LOG_LEVEL: {{ .Values.config.logLevel | quote }}
CHARGENET_LOG_JSON: {{ .Values.config.logJson | quote }}
CHARGENET_BUS: "kafka"
CHARGENET_KAFKA_BOOTSTRAP_SERVERS: {{ .Values.kafka.bootstrapServers | quote }}
CHARGENET_KAFKA_TOPIC_PREFIX: {{ .Values.kafka.topicPrefix | quote }}
CHARGENET_KAFKA_PARTITIONS: {{ .Values.kafka.partitions | quote }}
{{- include "chargenet.kafkaSecurityConfig" . }}
{{- if not .Values.chain.existingSecret }}
CHARGENET_CHAIN_RPC_URL: {{ required "chain.rpcUrl or chain.existingSecret is required" .Values.chain.rpcUrl | quote }}
{{- end }}
CHARGENET_SIGNER_URL: {{ printf "%s:%d" (include "chargenet.componentName" (dict "root" . "component" "signer")) (int .Values.signer.grpcPort) | quote }}
{{- /* Pods listen on every interface; the services' defaults are for a developer's machine. */}}
CHARGENET_HTTP_HOST: "0.0.0.0"
{{- range $name, $value := .Values.config.extraEnv }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
Pod-level settings every chargenet pod shares. Call with (dict "root" $ "cfg" $componentValues).
Component scheduling settings win over the global ones.
*/}}
{{- define "chargenet.podCommon" -}}
{{- $root := .root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "chargenet.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- /* Service links would put every Service of the namespace into the environment. */}}
enableServiceLinks: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with (default $root.Values.nodeSelector .cfg.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.affinity .cfg.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $root.Values.tolerations .cfg.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod template annotations: the config checksum, then the global and the component's own.
Call with (dict "root" $ "cfg" $componentValues).
*/}}
{{- define "chargenet.podAnnotations" -}}
{{ include "chargenet.configChecksum" .root }}
{{- with (merge (dict) .cfg.podAnnotations .root.Values.podAnnotations) }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod template labels. Call with the same dict as chargenet.componentLabels.
*/}}
{{- define "chargenet.podLabels" -}}
{{ include "chargenet.componentLabels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
envFrom for a service container: the shared ConfigMap, then the component's own sources.
*/}}
{{- define "chargenet.envFrom" -}}
- configMapRef:
    name: {{ include "chargenet.configName" .root }}
{{- with .cfg.envFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The ingress rule letting Prometheus scrape a pod's "http" port.
*/}}
{{- define "chargenet.metricsIngressRule" -}}
- ports:
    - port: http
      protocol: TCP
  from:
  {{- if .Values.networkPolicy.metricsFrom }}
    {{- toYaml .Values.networkPolicy.metricsFrom | nindent 4 }}
  {{- else }}
    - podSelector: {}
  {{- end }}
{{- end }}

{{/*
The init container that runs `chargenet check` with the core settings of the service: it validates
the configuration and reaches Kafka and the database, so a wrong DSN or an unreachable broker shows
as one line in `kubectl describe`/`logs -c check` before the service starts.
Call with (dict "root" $ "service" "wallet" "dbRef" $cfg.databaseSecret "dbKey" "wallet-database-url" "cfg" $cfg);
without dbKey (the gateway, which keeps no database) the container gets no DSN.
*/}}
{{- define "chargenet.checkInitContainer" -}}
{{- $root := .root -}}
{{- if $root.Values.dependencyCheck.enabled }}
initContainers:
  - name: check
    image: {{ include "chargenet.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: ["check"]
    envFrom:
      {{- include "chargenet.envFrom" (dict "root" $root "cfg" .cfg) | nindent 6 }}
    env:
      - name: CHARGENET_SERVICE_NAME
        value: {{ .service | quote }}
      {{- if .dbKey }}
      {{- include "chargenet.databaseEnv" (dict "root" $root "ref" .dbRef "key" .dbKey) | nindent 6 }}
      {{- end }}
      {{- with include "chargenet.secretEnv" $root | trim }}{{ . | nindent 6 }}{{- end }}
      {{- with include "chargenet.kafkaCredentialsEnv" (dict "root" $root "secret" .cfg.kafkaSecret) | trim }}{{ . | nindent 6 }}{{- end }}
      {{- include "chargenet.signerTokenEnv" (dict "root" $root "service" .service) | nindent 6 }}
    resources:
      {{- toYaml $root.Values.dependencyCheck.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "chargenet.tmpMount" $root | nindent 6 }}
      {{- /* `check` reaches Kafka with the service's settings, TLS files included. */}}
      {{- with include "chargenet.kafkaTlsMount" $root | trim }}{{ . | nindent 6 }}{{- end }}
{{- end }}
{{- end }}
