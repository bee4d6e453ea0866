{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "p2pd.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; leaves room for a "-mqttd-headless" suffix. */}}
{{- define "p2pd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "p2pd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels; call with (dict "ctx" $ "component" "stund"). */}}
{{- define "p2pd.labels" -}}
helm.sh/chart: {{ include "p2pd.chart" .ctx }}
{{ include "p2pd.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Values.image.tag | default .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: p2pd
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "p2pd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "p2pd.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of one program; call with (dict "ctx" $ "program" "stund"). */}}
{{- define "p2pd.image" -}}
{{- printf "%sp2pd/%s:%s" .ctx.Values.image.registry .program (.ctx.Values.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{/* Pod-level security: non-root, the images' UID, the default seccomp profile. */}}
{{- define "p2pd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root, no capabilities, no escalation. */}}
{{- define "p2pd.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Probes through the image's /healthcheck (no shell needed). Call with the admin port. */}}
{{- define "p2pd.probes" -}}
readinessProbe:
  exec:
    command: [/healthcheck, "http://127.0.0.1:{{ . }}/healthz"]
  periodSeconds: 10
  timeoutSeconds: 4
livenessProbe:
  exec:
    command: [/healthcheck, "http://127.0.0.1:{{ . }}/healthz"]
  initialDelaySeconds: 10
  periodSeconds: 20
  timeoutSeconds: 4
  failureThreshold: 3
{{- end -}}

{{- define "p2pd.turnSecretName" -}}
{{- .Values.turnd.auth.existingSecret | default (printf "%s-turnd" (include "p2pd.fullname" .)) -}}
{{- end -}}

{{- define "p2pd.mqttSecretName" -}}
{{- .Values.mqttd.auth.existingSecret | default (printf "%s-mqttd" (include "p2pd.fullname" .)) -}}
{{- end -}}

{{/* Broker i's in-cluster address. Call with (dict "ctx" $ "i" 0). */}}
{{- define "p2pd.brokerHost" -}}
{{- printf "%s-mqttd-%d.%s.svc" (include "p2pd.fullname" .ctx) (int .i) .ctx.Release.Namespace -}}
{{- end -}}
