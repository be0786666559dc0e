{{- define "portcullis.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "portcullis.policyConfigMap" -}}
{{- default (printf "%s-policy" (include "portcullis.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "portcullis.keysSecret" -}}
{{- default (printf "%s-keys" (include "portcullis.fullname" .)) .Values.keys.existingSecret -}}
{{- end -}}

{{- /*
portcullis.policy is policy.inline decoded (an empty dict with
policy.existingConfigMap, whose policy the chart cannot see).
*/ -}}
{{- define "portcullis.policy" -}}
{{- if .Values.policy.existingConfigMap -}}
{{- dict | toYaml -}}
{{- else -}}
{{- $pol := fromYaml .Values.policy.inline -}}
{{- if hasKey $pol "Error" -}}
{{- fail (printf "policy.inline is not YAML: %s" (get $pol "Error")) -}}
{{- end -}}
{{- $pol | toYaml -}}
{{- end -}}
{{- end -}}

{{- /*
portcullis.mounted fails unless the file a policy field names is one the
Deployment mounts: the keys Secret's file, or a file of the policy ConfigMap
(a relative name, from policy.extraFiles).
*/ -}}
{{- define "portcullis.mounted" -}}
{{- $field := index . 0 -}}{{- $name := index . 1 -}}{{- $secretFile := index . 2 -}}{{- $ctx := index . 3 -}}
{{- if hasPrefix "/" $name -}}
{{- if ne $name (printf "/etc/portcullis/keys/%s" $secretFile) -}}
{{- fail (printf "policy.inline: %s is %s, a file no pod has: name /etc/portcullis/keys/%s (the keys Secret), or a file of policy.extraFiles by its relative name" $field $name $secretFile) -}}
{{- end -}}
{{- else if not (hasKey $ctx.Values.policy.extraFiles $name) -}}
{{- fail (printf "policy.inline: %s is %s, relative to the policy's ConfigMap, but policy.extraFiles has no %s: add it there, or name /etc/portcullis/keys/%s (the keys Secret)" $field $name $name $secretFile) -}}
{{- end -}}
{{- end -}}

{{- /*
portcullis.check refuses, when the chart is rendered, a combination of
values whose pods would exit at start (or serve an API refusing every
call), saying what to change. The Deployment includes it.
*/ -}}
{{- define "portcullis.check" -}}
{{- $ks := .Values.keyStore -}}
{{- if and $ks.keysAPI.enabled (not $ks.enabled) -}}
{{- fail "keyStore.keysAPI.enabled needs keyStore.enabled: the key-management API manages the key store's keys (see the chart's examples/key-store.yaml)" -}}
{{- end -}}
{{- if and $ks.keysAPI.ingress.enabled (not $ks.keysAPI.enabled) -}}
{{- fail "keyStore.keysAPI.ingress.enabled needs keyStore.keysAPI.enabled: the Ingress leads browsers to the key API's token page" -}}
{{- end -}}
{{- if and $ks.keysAPI.ingress.enabled (not $ks.keysAPI.ingress.host) -}}
{{- fail "keyStore.keysAPI.ingress.host: name the token page's host (e.g. keys.example.com)" -}}
{{- end -}}
{{- with .Values.rateLimit.service -}}
{{- if not (regexMatch "^[^:/ ]+:[0-9]+$" .) -}}
{{- fail (printf "rateLimit.service %q: give the rate limit service's gRPC listener as host:port, e.g. ratelimit.ratelimit.svc.cluster.local:8081" .) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.policy.existingConfigMap -}}
{{- $pol := include "portcullis.policy" . | fromYaml -}}
{{- $store := get $pol "keys_store" -}}
{{- if and $ks.enabled (not $store) -}}
{{- fail "keyStore.enabled: policy.inline has no keys_store, so every pod would exit at start. Add keys_store: { postgres: { dsn_env: PORTCULLIS_DATABASE_URL } } to the policy (see the chart's examples/key-store.yaml), or set keyStore.enabled=false" -}}
{{- end -}}
{{- if and $store (not $ks.enabled) -}}
{{- fail "policy.inline names a keys_store but keyStore.enabled is false, so every pod would exit at start ($PORTCULLIS_DATABASE_URL is empty). Set keyStore.enabled=true and keyStore.dsnSecret.name (see the chart's examples/key-store.yaml), or remove keys_store from the policy" -}}
{{- end -}}
{{- if $store -}}
{{- $env := dig "postgres" "dsn_env" "" $store -}}
{{- if ne $env "PORTCULLIS_DATABASE_URL" -}}
{{- fail (printf "policy.inline: keys_store.postgres.dsn_env is %q, but the chart gives the pods the DSN in PORTCULLIS_DATABASE_URL: set dsn_env: PORTCULLIS_DATABASE_URL" $env) -}}
{{- end -}}
{{- end -}}
{{- $api := get $pol "keys_api" -}}
{{- if and $ks.keysAPI.enabled (not $api) -}}
{{- fail "keyStore.keysAPI.enabled: policy.inline has no keys_api (management_tokens_file, self_service), so the API would refuse every call. Add one (see the chart's examples/key-store.yaml), or set keyStore.keysAPI.enabled=false" -}}
{{- end -}}
{{- if not .Values.keys.existingSecret -}}
{{- with get (default dict $api) "management_tokens_file" -}}
{{- include "portcullis.mounted" (list "keys_api.management_tokens_file" . "management-tokens.yaml" $) -}}
{{- if and (hasPrefix "/" .) (not $.Values.keys.managementTokens) -}}
{{- fail "policy.inline: keys_api.management_tokens_file names the keys Secret's management-tokens.yaml, but keys.managementTokens is empty: give the tokens' digests there (portcullis keys hash), or use keys.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- with get $pol "keys_file" -}}
{{- include "portcullis.mounted" (list "keys_file" . "keys.yaml" $) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
