{{/* Names, labels and the argument groups every auditlake container shares. */}}

{{- define "auditlake.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "auditlake.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (receiver, consumer, follow): call with (list . "receiver"). */}}
{{- define "auditlake.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "auditlake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "auditlake.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "auditlake.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
{{- end -}}

{{/* True when the lake is on an object store, where several writers may share it. */}}
{{- define "auditlake.objectStore" -}}
{{- if regexMatch "^(s3|s3a|gs|az|abfs|abfss|adl)://" .Values.lake.url -}}true{{- end -}}
{{- end -}}

{{- define "auditlake.tlsSecret" -}}
{{- default (printf "%s-tls" (include "auditlake.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* --lake, its options and the cache every writer of an object-store lake needs. */}}
{{- define "auditlake.lakeArgs" -}}
- --lake={{ .Values.lake.url }}
{{- range .Values.lake.options }}
- --lake-option={{ . }}
{{- end }}
{{- if include "auditlake.objectStore" . }}
- --lake-cache=/var/lib/auditlake/cache
{{- end }}
{{- if .Values.profiles }}
- --profiles=/etc/auditlake/profiles/proxies.toml
{{- end }}
{{- end -}}

{{- define "auditlake.env" -}}
env:
  - name: AUDITLAKE_LOG
    value: info
{{- if .Values.lake.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.lake.credentialsSecret }}
{{- end }}
{{- end -}}

{{- define "auditlake.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "auditlake.profilesVolume" -}}
{{- if .Values.profiles }}
- name: profiles
  configMap:
    name: {{ include "auditlake.fullname" . }}-profiles
{{- end }}
{{- end -}}

{{- define "auditlake.profilesMount" -}}
{{- if .Values.profiles }}
- name: profiles
  mountPath: /etc/auditlake/profiles
  readOnly: true
{{- end }}
{{- end -}}

{{/* Refuse value combinations that would lose or split data, saying what to change. */}}
{{- define "auditlake.checks" -}}
{{- $store := include "auditlake.objectStore" . -}}
{{- $writers := 0 -}}
{{- if and .Values.receiver.enabled (not .Values.receiver.kafka.brokers) -}}
{{- if eq .Values.receiver.mode "statefulset" -}}{{- $writers = int .Values.receiver.replicas -}}{{- else -}}{{- $writers = 2 -}}{{- end -}}
{{- end -}}
{{- if .Values.consumer.enabled -}}{{- $writers = add $writers (int .Values.consumer.replicas) -}}{{- end -}}
{{- if .Values.follow.enabled -}}{{- $writers = add $writers 1 -}}{{- end -}}
{{- if and (gt (int $writers) 1) (not $store) -}}
{{- fail (printf "lake.url %q is a path, but this release runs several writers (receiver replicas, a hostPort DaemonSet, the consumer or the follower): they can share a lake only on an object store (s3://, gs://, az://). Set lake.url to a bucket, or receiver.replicas=1 with the other writers off." .Values.lake.url) -}}
{{- end -}}
{{- if and .Values.receiver.enabled (not .Values.auth.mtls.enabled) (not .Values.auth.tokens.existingSecret) -}}
{{- fail "the receiver would accept audit events from anyone: enable auth.mtls or set auth.tokens.existingSecret" -}}
{{- end -}}
{{- if and .Values.consumer.enabled (not .Values.consumer.brokers) -}}
{{- fail "consumer.enabled needs consumer.brokers (the Kafka bootstrap servers)" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name (an Issuer or ClusterIssuer of cert-manager)" -}}
{{- end -}}
{{- end -}}
