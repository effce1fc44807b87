{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "mutask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>", or the release name when it already contains
the chart name. Truncated to 52 characters so suffixes ("-operator", "-trainer", "-metrics")
still fit in 63.
*/}}
{{- define "mutask.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"name-version" as used by the helm.sh/chart label.
*/}}
{{- define "mutask.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels (app.kubernetes.io/* recommended labels).
*/}}
{{- define "mutask.labels" -}}
helm.sh/chart: {{ include "mutask.chart" . }}
{{ include "mutask.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mutask
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels (immutable once a Deployment exists: never add to these).
*/}}
{{- define "mutask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mutask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Operator component labels and selector labels. */}}
{{- define "mutask.operator.labels" -}}
{{ include "mutask.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "mutask.operator.selectorLabels" -}}
{{ include "mutask.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Resource names. */}}
{{- define "mutask.operator.fullname" -}}
{{- printf "%s-operator" (include "mutask.fullname" .) }}
{{- end }}

{{- define "mutask.metrics.serviceName" -}}
{{- printf "%s-metrics" (include "mutask.fullname" .) }}
{{- end }}

{{- define "mutask.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "mutask.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mutask.trainer.fullname" -}}
{{- printf "%s-trainer" (include "mutask.fullname" .) }}
{{- end }}

{{- define "mutask.trainer.serviceAccountName" -}}
{{- default (include "mutask.trainer.fullname" .) .Values.trainer.serviceAccount.name }}
{{- end }}

{{/*
True ("true") when the operator watches a fixed list of namespaces (namespaced mode).
*/}}
{{- define "mutask.namespaced" -}}
{{- if .Values.operator.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
Namespaces where trainer Jobs run, as a JSON list: trainer.namespaces, else the watched
namespaces, else the release namespace.
*/}}
{{- define "mutask.trainer.namespaces" -}}
{{- $ns := .Values.trainer.namespaces }}
{{- if not $ns }}{{ $ns = .Values.operator.watchNamespaces }}{{ end }}
{{- if not $ns }}{{ $ns = list .Release.Namespace }}{{ end }}
{{- $ns | uniq | toJson }}
{{- end }}

{{/* Images. */}}
{{- define "mutask.operator.image" -}}
{{- $img := .Values.operator.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* The trainer image of one variant (cpu | cuda | tpu): "<repo>:<tag>-<variant>". */}}
{{- define "mutask.trainer.image" -}}
{{- $img := .root.Values.trainer.image }}
{{- printf "%s:%s-%s" $img.repository (default .root.Chart.AppVersion $img.tag) .variant }}
{{- end }}

{{/* RBAC rules: generated into _rbac_rules.tpl by charts/sync-rbac.py. */}}

{{/* Serving (`mutask serve`): labels, names and image. */}}
{{- define "mutask.serving.labels" -}}
{{ include "mutask.labels" . }}
app.kubernetes.io/component: serving
{{- end }}

{{- define "mutask.serving.selectorLabels" -}}
{{ include "mutask.selectorLabels" . }}
app.kubernetes.io/component: serving
{{- end }}

{{- define "mutask.serving.fullname" -}}
{{- printf "%s-serving" (include "mutask.fullname" .) }}
{{- end }}

{{/* The serving image: serving.image.repository/tag, else the trainer image, "-<variant>". */}}
{{- define "mutask.serving.image" -}}
{{- $img := .Values.serving.image }}
{{- $repo := default .Values.trainer.image.repository $img.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.trainer.image.tag) $img.tag }}
{{- printf "%s:%s-%s" $repo $tag $img.variant }}
{{- end }}
