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

{{/* --- governance ------------------------------------------------------------------------------- */}}

{{/* the image of the governance pods: governance.image, else the predictor's (it has the engage CLI) */}}
{{- define "engage.governance.image" -}}
{{ .Values.governance.image | default .Values.images.predictor }}
{{- end -}}

{{/* the Secret of the governance database: rendering fails without one (no password is a value) */}}
{{- define "engage.governance.secret" -}}
{{- if not .Values.governance.database.existingSecret -}}
{{- fail "governance.enabled needs governance.database.existingSecret: the name of a Secret (made outside the chart: External Secrets, kubectl create secret) holding the database URL under governance.database.urlKey and, optionally, its password under governance.database.passwordKey; the chart takes no password in values" -}}
{{- end -}}
{{ .Values.governance.database.existingSecret }}
{{- end -}}

{{/* the database's env of every pod that opens the governance store: the URL, and libpq's password */}}
{{- define "engage.governance.env" -}}
- name: ENGAGE_GOVERNANCE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "engage.governance.secret" . }}
      key: {{ .Values.governance.database.urlKey }}
{{- with .Values.governance.database.passwordKey }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "engage.governance.secret" $ }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{/* labels of a governance object and its pods: (dict "root" $ "component" "governance-api") */}}
{{- define "engage.governance.labels" -}}
{{ include "engage.labels" .root }}
app.kubernetes.io/name: engage-{{ .component }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The pod spec of a governance pod: the engage CLI from the governance image, the database's env from the
Secret, Pod Security "restricted" with a read-only root and an emptyDir at /tmp.
(dict "root" $ "component" <name> "serviceAccount" <name> "command" <list> "restartPolicy" <"" | Never> "server" <bool>)
*/}}
{{- define "engage.governance.podSpec" -}}
{{- $root := .root -}}
{{- $g := $root.Values.governance -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: false
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- with $g.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $g.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "engage.podSecurityContext" $root | nindent 2 }}
containers:
- name: {{ .component }}
  image: {{ include "engage.governance.image" $root }}
  imagePullPolicy: IfNotPresent
  command:
    {{- toYaml (slice .command 0 3) | nindent 4 }}
  {{- with (slice .command 3) }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  env:
    {{- include "engage.governance.env" $root | nindent 4 }}
  {{- if .server }}
  ports:
  - name: http
    containerPort: 8080
    protocol: TCP
  readinessProbe:
    httpGet: {path: /healthz, port: http}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /healthz, port: http}
    initialDelaySeconds: 15
    periodSeconds: 10
  {{- end }}
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  securityContext:
    {{- include "engage.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
  - name: tmp
    mountPath: /tmp
volumes:
- name: tmp
  emptyDir:
    sizeLimit: {{ $g.tmpSizeLimit }}
{{- end -}}

{{/* --- signed model versions ------------------------------------------------------------------ */}}

{{/*
Every server verifies the version it loads against the public keys of signing.publicKeysSecret, mounted
read-only; ENGAGE_SIGNING_REQUIRED: only those keys count (never a development key), and an unsigned
model folder is refused. engage deploy renders the same (engage_serving.deploy: SIGNING_KEYS_DIR).
*/}}
{{- define "engage.signing.env" -}}
- name: ENGAGE_SIGNING_PUBLIC_KEYS_FILE
  value: /etc/engage/signing
- name: ENGAGE_SIGNING_REQUIRED
  value: "true"
{{- end -}}

{{- define "engage.signing.volumeMount" -}}
- name: signing-keys
  mountPath: /etc/engage/signing
  readOnly: true
{{- end -}}

{{- define "engage.signing.volume" -}}
- name: signing-keys
  secret:
    secretName: {{ .Values.signing.publicKeysSecret }}
{{- end -}}
