{{/* The release's full name: the release name, or release-chart when they differ. */}}
{{- define "fledge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fledge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fledge.labels" -}}
{{ include "fledge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fledge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fledge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigRepo's name: as `fledge run --repo` derives it from the path when none is set. */}}
{{- define "fledge.configRepoName" -}}
{{- if .Values.configRepo.name -}}
{{- .Values.configRepo.name -}}
{{- else -}}
{{- $last := base (trimSuffix "/" (toString .Values.configRepo.spec.path)) | lower -}}
{{- $name := regexReplaceAll "[^a-z0-9]" $last "-" | trimAll "-" | trunc 50 -}}
{{- default "default" $name -}}
{{- end -}}
{{- end -}}
