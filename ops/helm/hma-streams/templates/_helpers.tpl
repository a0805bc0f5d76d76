{{- define "hmas.fullname" -}}
{{- printf "%s-hma-streams" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hmas.labels" -}}
app.kubernetes.io/name: hma-streams
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hmas.selector" -}}
app.kubernetes.io/name: hma-streams
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hmas.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "hmas.fullname" .)) -}}
{{- end -}}

{{/* Memory request in Mi for a process holding `millions` million signals: base + per million x millions
(`perMillion` when given: a shard worker's, else sizing.memoryPerMillionMi). */}}
{{- define "hmas.memoryMi" -}}
{{- $s := .root.Values.sizing -}}
{{- add (int $s.memoryBaseMi) (mul (int (.perMillion | default $s.memoryPerMillionMi)) (int .millions)) -}}
{{- end -}}

{{- define "hmas.resources" -}}
{{- $request := include "hmas.memoryMi" . | int -}}
resources:
  requests:
    cpu: {{ .cpu | quote }}
    memory: {{ printf "%dMi" $request }}
  limits:
    memory: {{ printf "%dMi" (int (mulf $request .root.Values.sizing.memoryLimitFactor)) }}
{{- end -}}

{{/* Settings and secrets every hmas container reads. */}}
{{- define "hmas.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "hmas.fullname" . }}-config
  - secretRef:
      name: {{ include "hmas.secretName" . }}
{{- end -}}

{{- define "hmas.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "hmas.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A worker container: main (shard = -1) or shard worker. `.root` is the chart's context. */}}
{{- define "hmas.workerContainer" -}}
- name: worker
  image: {{ printf "%s:%s" .root.Values.image.repository .root.Values.image.tag | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["sh", "-c"]
  args:
    # The ring of recent hashes runs on one worker only: the first pod of the main StatefulSet.
    - >-
      {{- if lt (int .shard) 0 }}
      if [ "${POD_NAME##*-}" != 0 ]; then export HMAS_RECENT_ENABLED=0; fi;
      exec hmas worker
      {{- else }}
      exec hmas worker --shard {{ .shard }}
      {{- end }}
  {{- include "hmas.envFrom" .root | nindent 2 }}
  env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: HMAS_WORKER_ID  # static group membership: a restarted pod takes its partitions back at once
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
  ports:
    - {name: metrics, containerPort: {{ .root.Values.metrics.port }}}
  startupProbe:  # the process is up; loading the bank view (minutes per 10M signals) is readiness, never a restart
    httpGet: {path: /status/live, port: metrics}
    periodSeconds: 5
    failureThreshold: 24
  readinessProbe:  # 503 until the bank view has caught up: a rolling update waits for it
    httpGet: {path: /status, port: metrics}
    periodSeconds: 10
  livenessProbe:
    httpGet: {path: /status/live, port: metrics}
    periodSeconds: 20
    failureThreshold: 3
  {{- include "hmas.resources" . | nindent 2 }}
  volumeMounts:
    - {name: state, mountPath: /data}
{{- end -}}

{{- define "hmas.stateVolumeClaim" -}}
volumeClaimTemplates:
  - metadata:
      name: state
    spec:
      accessModes: [ReadWriteOnce]
      {{- with .Values.worker.storage.storageClassName }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ .Values.worker.storage.size }}
{{- end -}}
