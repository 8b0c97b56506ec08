{{/* Names and labels. */}}
{{- define "bedrock-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bedrock-gateway.fullname" -}}
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

{{- define "bedrock-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bedrock-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "bedrock-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bedrock-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ include "bedrock-gateway.imageTag" . | quote }}
app.kubernetes.io/part-of: bedrock-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "bedrock-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bedrock-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bedrock-gateway.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "bedrock-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "bedrock-gateway.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "bedrock-gateway.keysSecret" -}}
{{- if .Values.apiKeys.keysJson }}
{{- printf "%s-keys" (include "bedrock-gateway.fullname" .) }}
{{- else }}
{{- default (printf "%s-keys" (include "bedrock-gateway.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}
{{- end }}

{{- define "bedrock-gateway.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "bedrock-gateway.fullname" .) }}
{{- else }}
{{- default (printf "%s-tls" (include "bedrock-gateway.fullname" .)) .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* The pod's fixed layout: ports and the files under /etc/bedrock-gateway. */}}
{{- define "bedrock-gateway.etc" -}}/etc/bedrock-gateway{{- end }}
{{- define "bedrock-gateway.redisPasswordEnv" -}}BEDROCK_GATEWAY_REDIS_PASSWORD{{- end }}

{{- define "bedrock-gateway.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
bedrock-gateway.config renders gateway.yaml: .Values.config plus the keys
the chart owns because they must agree with the pod (ports, mounted files,
shutdown timing, fleet wiring). Setting one of those in .Values.config is
an error rather than a silent override.
*/}}
{{- define "bedrock-gateway.config" -}}
{{- $c := deepCopy (.Values.config | default dict) }}
{{- $etc := include "bedrock-gateway.etc" . }}
{{- range $k := list "listen" "tls" }}
{{- if hasKey $c $k }}{{ fail (printf "config.%s is set by the chart; remove it from values" $k) }}{{ end }}
{{- end }}
{{- $admin := get $c "admin" | default dict }}
{{- if hasKey $admin "listen" }}{{ fail "config.admin.listen is set by the chart (the pod's admin port); remove it" }}{{ end }}
{{- $server := get $c "server" | default dict }}
{{- range $k := list "drain_delay" "shutdown_grace" }}
{{- if hasKey $server $k }}{{ fail (printf "config.server.%s is set by the chart from shutdown.*; remove it" $k) }}{{ end }}
{{- end }}
{{- $auth := get $c "auth" | default dict }}
{{- if hasKey $auth "api_keys_file" }}{{ fail "config.auth.api_keys_file is set by the chart (apiKeys); remove it" }}{{ end }}
{{- $fleet := get $c "fleet" | default dict }}
{{- range $k := list "redis" "session_key_file" "expected_replicas" }}
{{- if hasKey $fleet $k }}{{ fail (printf "config.fleet.%s is set by the chart from fleet.*; remove it" $k) }}{{ end }}
{{- end }}
{{- $_ := set $c "listen" ":8443" }}
{{- $_ = set $admin "listen" "0.0.0.0:9090" }}
{{- $_ = set $c "admin" $admin }}
{{- $_ = set $server "drain_delay" (printf "%ds" (.Values.shutdown.drainDelaySeconds | int)) }}
{{- $_ = set $server "shutdown_grace" (printf "%ds" (.Values.shutdown.graceSeconds | int)) }}
{{- $_ = set $c "server" $server }}
{{- if .Values.tls.enabled }}
{{- $_ = set $c "tls" (dict "cert_file" (printf "%s/tls/tls.crt" $etc) "key_file" (printf "%s/tls/tls.key" $etc)) }}
{{- end }}
{{- $_ = set $auth "api_keys_file" (printf "%s/keys.json" $etc) }}
{{- $_ = set $c "auth" $auth }}
{{- if .Values.fleet.enabled }}
{{- $r := .Values.fleet.redis }}
{{- if and $r.url $r.addresses }}{{ fail "fleet.redis: set url or addresses, not both" }}{{ end }}
{{- if not (or $r.url $r.addresses) }}{{ fail "fleet.redis.url (or fleet.redis.addresses) is required in fleet mode" }}{{ end }}
{{- $redis := dict }}
{{- if $r.url }}
{{- $_ = set $redis "url" $r.url }}
{{- else }}
{{- $_ = set $redis "addresses" $r.addresses }}
{{- if $r.masterName }}{{ $_ = set $redis "master_name" $r.masterName }}{{ end }}
{{- if $r.tls }}{{ $_ = set $redis "tls" true }}{{ end }}
{{- end }}
{{- if .Values.fleet.redis.existingSecret }}
{{- $_ = set $redis "password_env" (include "bedrock-gateway.redisPasswordEnv" .) }}
{{- if .Values.fleet.redis.usernameKey }}
{{- $_ = set $redis "username_file" (printf "%s/redis/username" $etc) }}
{{- end }}
{{- end }}
{{- if .Values.fleet.redis.caSecret }}
{{- if not (or (hasPrefix "rediss://" $r.url) (and $r.addresses $r.tls)) }}{{ fail "fleet.redis.caSecret needs TLS: a rediss:// fleet.redis.url, or fleet.redis.addresses with fleet.redis.tls" }}{{ end }}
{{- $_ = set $redis "tls_ca_file" (printf "%s/redis/ca.crt" $etc) }}
{{- end }}
{{- $_ = set $fleet "redis" $redis }}
{{- $_ = required "fleet.sessionKeys.existingSecret is required in fleet mode (shared sessions are encrypted)" .Values.fleet.sessionKeys.existingSecret }}
{{- $_ = set $fleet "session_key_file" (printf "%s/fleet/session-keys" $etc) }}
{{- $_ = set $fleet "expected_replicas" (.Values.fleet.expectedReplicas | default (include "bedrock-gateway.minReplicas" .) | int) }}
{{- end }}
{{- if $fleet }}
{{- $_ = set $c "fleet" $fleet }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
bedrock-gateway.checks refuses values that would deploy a broken or
quota-breaking gateway.
*/}}
{{- define "bedrock-gateway.checks" -}}
{{- if not .Values.fleet.enabled }}
{{- $rate := 400.0 }}
{{- with .Values.config.sts }}{{ with .rate }}{{ $rate = . | float64 }}{{ end }}{{ end }}
{{- $replicas := .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}{{ $replicas = .Values.autoscaling.maxReplicas }}{{ end }}
{{- if gt (mulf $rate $replicas) 500.0 }}
{{- fail (printf "config.sts.rate %v x %v replicas = %v AssumeRole/s: above 500/s, the stricter of the STS quotas AWS states (600/s in the IAM guide, 500/s in the Bedrock cost-attribution article) (lower sts.rate or the replicas, or use fleet mode)" $rate $replicas (mulf $rate $replicas)) }}
{{- end }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) }}
{{- fail "tls.certManager.enabled needs tls.enabled" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled .Values.tls.existingSecret }}
{{- fail "tls: set existingSecret or certManager.enabled, not both" }}
{{- end }}
{{- if and .Values.apiKeys.keysJson .Values.apiKeys.existingSecret }}
{{- fail "apiKeys: set existingSecret or keysJson, not both" }}
{{- end }}
{{- end }}
