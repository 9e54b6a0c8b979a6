{{/* The app name: the chart's, unless nameOverride. */}}
{{- define "logferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' base name. "logferry" for a release named logferry, as in deploy/k8s; the release
name is in it otherwise, so that two releases' cluster-scoped RBAC objects do not collide.
*/}}
{{- define "logferry.fullname" -}}
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

{{/* A name of the form <fullname>-<suffix>, still within the 63 characters of a DNS label. */}}
{{- define "logferry.suffixed" -}}
{{- $base := include "logferry.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}

{{/*
What the pods are selected by: the app name alone, as in deploy/k8s. A selector cannot change
after creation, so a DaemonSet applied from the manifests can be taken over by a release.
*/}}
{{- define "logferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logferry.name" . }}
{{- end }}

{{/* Every object's labels: the selector's and Helm's usual ones. */}}
{{- define "logferry.labels" -}}
{{ include "logferry.selectorLabels" . }}
{{ include "logferry.helmLabels" . }}
{{- end }}

{{/* Helm's usual labels, for objects named apart from the agents (the setup Job). */}}
{{- define "logferry.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "logferry.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The agent's API port, from config's [api] listen (the agent's default when unset). The config
decides where the agent listens; the ports, probes and Service follow it, and a config that
would leave the probes knocking on a closed port is refused here rather than crash-looping on
every node.
*/}}
{{- define "logferry.apiPort" -}}
{{- $config := include "logferry.config" . | fromYaml }}
{{- $listen := "127.0.0.1:2020" }}
{{- with $config.api }}{{ with .listen }}{{ $listen = . }}{{ end }}{{ end }}
{{- $port := regexFind "[0-9]+$" $listen }}
{{- $host := trimSuffix (printf ":%s" $port) $listen | trimAll "[]" }}
{{- if or (not $port) (eq $host "localhost" "::1") (hasPrefix "127." $host) }}
{{- fail (printf "config: [api] listen = %q is not reachable from outside the pod: the kubelet's probes and Prometheus come to the pod's IP. Listen on \"0.0.0.0:<port>\"." $listen) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
config, parsed (as YAML, since include returns text: the map is carried through toYaml).
Refuses a config that is not TOML, and a data_dir outside the node directory mounted for it.
*/}}
{{- define "logferry.config" -}}
{{- $config := fromToml .Values.config }}
{{- if hasKey $config "Error" }}
{{- fail (printf "config is not valid TOML: %s" $config.Error) }}
{{- end }}
{{- $dataDir := $config.data_dir | default "/var/lib/logferry" }}
{{- if not (or (eq $dataDir "/var/lib/logferry") (hasPrefix "/var/lib/logferry/" $dataDir)) }}
{{- fail (printf "config: data_dir = %q is not under /var/lib/logferry, the node's directory the chart mounts: checkpoints and the buffer would be lost with the pod." $dataDir) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The Secrets' volumes, shared by the agents and the setup Job (same files, same paths). */}}
{{- define "logferry.secretVolumes" -}}
- name: secrets
  secret:
    secretName: {{ required "existingSecret: the Secret holding the credentials and CA the config names" .root.Values.existingSecret }}
    defaultMode: {{ .mode }}
{{- range $i, $m := .root.Values.extraSecretMounts }}
- name: {{ printf "extra-secret-%d" $i }}
  secret:
    secretName: {{ required "extraSecretMounts[].secretName" $m.secretName }}
    defaultMode: {{ $.mode }}
{{- end }}
{{- end }}

{{- define "logferry.secretMounts" -}}
- name: secrets
  mountPath: /etc/logferry-secrets
  readOnly: true
{{- range $i, $m := .Values.extraSecretMounts }}
- name: {{ printf "extra-secret-%d" $i }}
  mountPath: {{ required "extraSecretMounts[].mountPath" $m.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
