{{/*
Names are fixed (engage-*): the predictor's logger URL, the network policies and `engage deploy` name
these objects, so one release per namespace.
*/}}

{{- define "engage.labels" -}}
app.kubernetes.io/part-of: engage
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "engage.serviceAccountName" -}}
{{ .Values.serviceAccount.name }}
{{- end -}}

{{/* the pod-level security context of every Engage pod: Pod Security "restricted" */}}
{{- define "engage.podSecurityContext" -}}
fsGroup: 10001
runAsGroup: 10001
runAsNonRoot: true
runAsUser: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* the container-level security context: no privilege, no capability, read-only root filesystem */}}
{{- define "engage.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop:
  - ALL
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- end -}}

{{/* the drift detector's address inside the cluster: where the predictor's logger posts */}}
{{- define "engage.driftDetectorURL" -}}
{{ printf "http://engage-drift-detector.%s.svc.cluster.local/" .Release.Namespace }}
{{- end -}}

{{/* the SHA-256 of a model version without its prefix */}}
{{- define "engage.versionHex" -}}
{{ .Values.inferenceService.model.version | trimPrefix "sha256:" }}
{{- end -}}
