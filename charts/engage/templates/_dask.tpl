{{/* --- the distributed engine: Dask through the Dask Kubernetes operator ---------------------------- */}}

{{/* the namespace of the Dask objects: dask.namespace (the pipeline's step pods'), else the release's */}}
{{- define "engage.dask.namespace" -}}
{{ .Values.dask.namespace | default .Release.Namespace }}
{{- end -}}

{{/* the labels the Dask pods carry (on top of the operator's dask.org/*); the network policies select them */}}
{{- define "engage.dask.selector" -}}
app.kubernetes.io/part-of: engage
app.kubernetes.io/name: engage-dask
{{- end -}}

{{/*
A Dask pod spec: the components image running `dask scheduler` or `dask worker`, Pod Security
"restricted", a read-only root with an emptyDir at /tmp (Dask's local directory is /tmp/dask), no
service account token (neither calls the Kubernetes API).
(dict "root" $ "component" <scheduler | worker>)
*/}}
{{- define "engage.dask.podSpec" -}}
{{- $d := .root.Values.dask -}}
{{- $part := index $d .component -}}
{{- with $d.podServiceAccount }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
{{- with $d.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $d.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "engage.podSecurityContext" .root | nindent 2 }}
containers:
- name: {{ .component }}
  image: {{ $d.image }}
  imagePullPolicy: IfNotPresent
  {{- if eq .component "scheduler" }}
  command: [dask, scheduler]
  args: [--host, 0.0.0.0, --port, "8786", --dashboard-address, ":8787"]
  ports:
  - {name: tcp-comm, containerPort: 8786, protocol: TCP}
  - {name: http-dashboard, containerPort: 8787, protocol: TCP}
  readinessProbe:
    httpGet: {path: /health, port: http-dashboard}
    periodSeconds: 2
  livenessProbe:
    httpGet: {path: /health, port: http-dashboard}
    initialDelaySeconds: 15
    periodSeconds: 20
  {{- else }}
  # the scheduler's address comes from DASK_SCHEDULER_ADDRESS, which the operator sets
  command: [dask, worker]
  args: [--name, $(DASK_WORKER_NAME), --nworkers, "1", --nthreads, {{ $d.worker.threads | quote }}, --memory-limit, auto, --local-directory, /tmp/dask, --worker-port, "8789", --nanny-port, "8790", --dashboard-address, ":8788"]
  ports:
  - {name: http-dashboard, containerPort: 8788, protocol: TCP}
  - {name: tcp-worker, containerPort: 8789, protocol: TCP}
  - {name: tcp-nanny, containerPort: 8790, protocol: TCP}
  {{- end }}
  env:
  - name: DASK_TEMPORARY_DIRECTORY
    value: /tmp/dask
  resources:
    {{- toYaml $part.resources | nindent 4 }}
  securityContext:
    {{- include "engage.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
  - name: tmp
    mountPath: /tmp
volumes:
- name: tmp
  emptyDir:
    sizeLimit: {{ $part.tmpSizeLimit }}
{{- end -}}

{{/*
A DaskCluster (kubernetes.dask.org/v1): the scheduler's pod and ClusterIP Service, the workers' pod.
The step renames the ConfigMap's copy per run (engine_cluster) and points the Service's selector at it.
(dict "root" $ "name" <name> "idleTimeout" <seconds>)
*/}}
{{- define "engage.dask.cluster" -}}
{{- $root := .root -}}
{{- $d := $root.Values.dask -}}
apiVersion: kubernetes.dask.org/v1
kind: DaskCluster
metadata:
  name: {{ .name }}
  namespace: {{ include "engage.dask.namespace" $root }}
  labels:
    {{- include "engage.labels" $root | nindent 4 }}
    app.kubernetes.io/name: engage-dask
spec:
  idleTimeout: {{ .idleTimeout }}
  scheduler:
    metadata:
      labels:
        {{- include "engage.dask.selector" $root | nindent 8 }}
        app.kubernetes.io/component: dask-scheduler
    spec:
      {{- include "engage.dask.podSpec" (dict "root" $root "component" "scheduler") | nindent 6 }}
    service:
      type: ClusterIP
      selector:
        dask.org/cluster-name: {{ .name }}
        dask.org/component: scheduler
      ports:
      - {name: tcp-comm, protocol: TCP, port: 8786, targetPort: tcp-comm}
      - {name: http-dashboard, protocol: TCP, port: 8787, targetPort: http-dashboard}
  worker:
    replicas: {{ $d.worker.replicas }}
    metadata:
      labels:
        {{- include "engage.dask.selector" $root | nindent 8 }}
        app.kubernetes.io/component: dask-worker
    spec:
      {{- include "engage.dask.podSpec" (dict "root" $root "component" "worker") | nindent 6 }}
{{- end -}}
