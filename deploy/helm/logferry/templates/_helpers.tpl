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
{{- include "logferry.reachablePort" (dict "config" $config "key" "config") }}
{{- end }}

{{/*
The port of a parsed config's [api] listen (.config; "127.0.0.1:2020", the agent's default,
when unset), refused when loopback: the kubelet's probes and Prometheus come to the pod's IP.
.key names the value in the message.
*/}}
{{- define "logferry.reachablePort" -}}
{{- $listen := "127.0.0.1:2020" }}
{{- with .config.api }}{{ with .listen }}{{ $listen = . }}{{ end }}{{ end }}
{{- include "logferry.listenPort" (dict "listen" $listen "what" (printf "%s: [api] listen" .key) "who" "the kubelet's probes and Prometheus come") }}
{{- end }}

{{/*
The port of an address the pod listens on (.listen), refused when it is loopback or has no
port: .what names the key, .who says who comes from outside the pod.
*/}}
{{- define "logferry.listenPort" -}}
{{- $port := regexFind "[0-9]+$" .listen }}
{{- $host := trimSuffix (printf ":%s" $port) .listen | trimAll "[]" }}
{{- if or (not $port) (eq $host "localhost" "::1") (hasPrefix "127." $host) }}
{{- fail (printf "%s = %q is not reachable from outside the pod: %s to the pod's IP. Listen on \"0.0.0.0:<port>\"." .what .listen .who) }}
{{- end }}
{{- $port }}
{{- end }}

{{/*
config, parsed (as YAML, since include returns text: the map is carried through toYaml).
Refuses a config that is not TOML, and a data_dir outside the node directory mounted for it.
*/}}
{{- define "logferry.config" -}}
{{- include "logferry.parsedConfig" (dict "text" .Values.config "key" "config" "volume" "the node's directory the chart mounts") }}
{{- end }}

{{/*
A config file's text (.text, the value .key), parsed and returned as YAML. Refuses one that is
not TOML, and a data_dir outside /var/lib/logferry, where .volume is mounted.
*/}}
{{- define "logferry.parsedConfig" -}}
{{- $config := fromToml .text }}
{{- if hasKey $config "Error" }}
{{- fail (printf "%s is not valid TOML: %s" .key $config.Error) }}
{{- end }}
{{- $dataDir := $config.data_dir | default "/var/lib/logferry" }}
{{- if not (or (eq $dataDir "/var/lib/logferry") (hasPrefix "/var/lib/logferry/" $dataDir)) }}
{{- fail (printf "%s: data_dir = %q is not under /var/lib/logferry, %s: checkpoints and the buffer would be lost with the pod." .key $dataDir .volume) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
aggregator.config, parsed, with the same checks as config's (data_dir on the replica's
volume), and refused without a forward listener or with file globs: an aggregator's records
come from forwarders, and it mounts no node's logs.
*/}}
{{- define "logferry.aggregatorConfig" -}}
{{- $config := include "logferry.parsedConfig" (dict "text" .Values.aggregator.config "key" "aggregator.config" "volume" "the replica's volume the chart mounts") | fromYaml }}
{{- $input := $config.input | default dict }}
{{- if not $input.forward }}
{{- fail "aggregator.config: no [[input.forward]] listener: an aggregator takes its records from forwarders (docs/aggregator.md)." }}
{{- end }}
{{- if not (hasKey $input "include") }}
{{- fail "aggregator.config: [input] include is the node's container logs when unset, and an aggregator mounts none: set include = []." }}
{{- end }}
{{- if $input.include }}
{{- fail (printf "aggregator.config: [input] include = %s: an aggregator mounts no node's logs; set include = []." (toJson $input.include)) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The aggregator's forward port: its config's first [[input.forward]] listen. */}}
{{- define "logferry.aggregatorForwardPort" -}}
{{- $config := include "logferry.aggregatorConfig" . | fromYaml }}
{{- $listen := (first $config.input.forward).listen | default "" }}
{{- include "logferry.listenPort" (dict "listen" $listen "what" "aggregator.config: [[input.forward]] listen" "who" "forwarders come through the Service") }}
{{- end }}

{{/* The aggregator's API port, from its config's [api] listen. */}}
{{- define "logferry.aggregatorApiPort" -}}
{{- $config := include "logferry.aggregatorConfig" . | fromYaml }}
{{- include "logferry.reachablePort" (dict "config" $config "key" "aggregator.config") }}
{{- end }}

{{/* What the aggregator's pods are selected by: its own name, never the agents'. */}}
{{- define "logferry.aggregatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "logferry.name" . }}-aggregator
{{- end }}

{{- define "logferry.aggregatorLabels" -}}
{{ include "logferry.aggregatorSelectorLabels" . }}
{{ include "logferry.helmLabels" . }}
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

{{/* The aggregator's objects' name: <fullname>-aggregator ("logferry-aggregator"). */}}
{{- define "logferry.aggregatorName" -}}
{{- include "logferry.suffixed" (dict "root" . "suffix" "aggregator") }}
{{- end }}
