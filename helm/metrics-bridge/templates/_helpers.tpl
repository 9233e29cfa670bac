{{/*
Names, labels and the few paths every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "metrics-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: the release name alone when it already contains the chart name. */}}
{{- define "metrics-bridge.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "metrics-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels for every object. */}}
{{- define "metrics-bridge.labels" -}}
helm.sh/chart: {{ include "metrics-bridge.chart" . }}
{{ include "metrics-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: exporter
{{- end }}

{{/* The labels selectors match: name and instance only, so they never change across upgrades. */}}
{{- define "metrics-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metrics-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "metrics-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "metrics-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest wins over a tag; the tag defaults to the chart's appVersion. */}}
{{- define "metrics-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the chart runs a sharded StatefulSet instead of a Deployment. */}}
{{- define "metrics-bridge.sharded" -}}
{{- if gt (int .Values.sharding.shards) 1 }}true{{ end }}
{{- end }}

{{/* Where the pod mounts things; the config's *_file keys point under secretsDir. */}}
{{- define "metrics-bridge.configDir" -}}/etc/metrics-bridge/config{{- end }}
{{- define "metrics-bridge.secretsDir" -}}/etc/metrics-bridge/secrets{{- end }}
{{- define "metrics-bridge.webConfigDir" -}}/etc/metrics-bridge/web{{- end }}
