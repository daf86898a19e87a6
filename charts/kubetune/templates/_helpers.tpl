{{/*
The chart name, overridable.
*/}}
{{- define "kubetune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name. Truncated to 52 characters: the controller Job adds
"-controller" (11) and a Job name must stay a 63-character label value.
*/}}
{{- define "kubetune.fullname" -}}
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

{{- define "kubetune.controllerName" -}}
{{- printf "%s-controller" (include "kubetune.fullname" .) }}
{{- end }}

{{- define "kubetune.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that identify the release; on pod templates, where a change on upgrade
would hit the immutable Job template for no reason, only these are used.
*/}}
{{- define "kubetune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetune.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/*
Labels of every object. Callers add app.kubernetes.io/component.
*/}}
{{- define "kubetune.labels" -}}
helm.sh/chart: {{ include "kubetune.chart" . | quote }}
{{ include "kubetune.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}

{{- define "kubetune.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetune.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubetune.image" -}}
{{- printf "%s:%s" .repository (.tag | default $.appVersion) }}
{{- end }}

{{/*
The study as the controller reads it: .Values.study, with .Values.parallelism
(when set) as budget.parallel. A deep copy, so .Values stays untouched for the
other templates.
*/}}
{{- define "kubetune.study" -}}
{{- $study := deepCopy .Values.study }}
{{- if not (kindIs "invalid" .Values.parallelism) }}
{{- $budget := $study.budget | default dict }}
{{- $_ := set $budget "parallel" .Values.parallelism }}
{{- $_ := set $study "budget" $budget }}
{{- end }}
{{- /* A program study's trial section is its own: the CNN's defaults that Helm
merged from values.yaml are not its settings (kubetune/kinds/program.py). */}}
{{- /* Several objectives replace the one values.yaml gives by default. */}}
{{- if $study.objectives }}
{{- $_ := unset $study "objective" }}
{{- end }}
{{- $trial := $study.trial | default dict }}
{{- if eq (toString ($trial.kind | default "cnn")) "program" }}
{{- $_ := set $study "trial" (pick $trial "kind" "command" "image") }}
{{- end }}
{{- /* toYaml sorts keys: emit the top level in the spec's own order, for
people reading the ConfigMap (the schema allows no other keys). */}}
{{- range $key := list "name" "objective" "objectives" "constraints" "space" "optimizer" "budget" "stopping" "confirm" "x0" "trial" }}
{{- if hasKey $study $key }}
{{ toYaml (dict $key (get $study $key)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks JSON schema cannot express (it cannot compare two fields); the same
rules kubetune/spec.py applies, so a bad study fails at install time rather
than in a crash-looping controller.
*/}}
{{- define "kubetune.validate" -}}
{{- $budget := .Values.study.budget | default dict }}
{{- $maxTrials := $budget.max_trials | default 60 }}
{{- $parallel := .Values.parallelism | default $budget.parallel | default 1 }}
{{- if gt (int $parallel) (int $maxTrials) }}
{{- fail (printf "study.budget.parallel: %v (or parallelism) is more than study.budget.max_trials (%v)" $parallel $maxTrials) }}
{{- end }}
{{- $sharing := .Values.gpu.sharing | default dict }}
{{- if and $sharing.strategy (ne (int .Values.gpu.count) 1) }}
{{- fail (printf "gpu.count: a shared GPU gives each trial one share, so gpu.count must be 1 with gpu.sharing.strategy %s (got %v)" $sharing.strategy .Values.gpu.count) }}
{{- end }}
{{- if and (not $sharing.strategy) $sharing.maxClientsPerGpu }}
{{- fail "gpu.sharing.maxClientsPerGpu: set with gpu.sharing.strategy only" }}
{{- end }}
{{- range $i, $dim := .Values.study.space | default list }}
{{- if and (hasKey $dim "low") (hasKey $dim "high") }}
{{- if ge (float64 $dim.low) (float64 $dim.high) }}
{{- fail (printf "study.space[%d].low: must be less than high (%v >= %v)" $i $dim.low $dim.high) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The trial Job settings the Kubernetes launcher reads (job.yaml): exactly the
keys of the chart/controller contract, in its order.
*/}}
{{- define "kubetune.jobSettings" -}}
image: {{ include "kubetune.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.trialImage) | quote }}
imagePullPolicy: {{ .Values.trialImage.pullPolicy }}
imagePullSecrets: {{- include "kubetune.yamlOrEmpty" (list .Values.imagePullSecrets "[]") }}
gpus: {{ int .Values.gpu.count }}
gpuResource: {{ .Values.gpu.resourceName }}
nodeSelector: {{- include "kubetune.yamlOrEmpty" (list (include "kubetune.trialNodeSelector" . | fromYaml) "{}") }}
tolerations: {{- include "kubetune.yamlOrEmpty" (list .Values.tolerations "[]") }}
affinity: {{- include "kubetune.yamlOrEmpty" (list .Values.affinity "{}") }}
resources: {{- include "kubetune.yamlOrEmpty" (list .Values.resources.trial "{}") }}
serviceAccountName: {{ include "kubetune.serviceAccountName" . }}
activeDeadlineSeconds: {{ int64 .Values.trial.activeDeadlineSeconds }}
backoffLimit: {{ int .Values.trial.backoffLimit }}
ttlSecondsAfterFinished: {{ int64 .Values.trial.ttlSecondsAfterFinished }}
pendingTimeoutSeconds: {{ int64 .Values.trial.pendingTimeoutSeconds }}
queueTimeoutSeconds: {{ if .Values.trial.queueTimeoutSeconds }}{{ int64 .Values.trial.queueTimeoutSeconds }}{{ else }}null{{ end }}
env: {{- include "kubetune.yamlOrEmpty" (list .Values.extraEnv "[]") }}
podSecurityContext: {{- include "kubetune.yamlOrEmpty" (list .Values.podSecurityContext "{}") }}
securityContext: {{- include "kubetune.yamlOrEmpty" (list .Values.containerSecurityContext "{}") }}
jobLabels: {{- include "kubetune.yamlOrEmpty" (list .Values.trial.labels "{}") }}
jobAnnotations: {{- include "kubetune.yamlOrEmpty" (list .Values.trial.annotations "{}") }}
podLabels: {{- include "kubetune.yamlOrEmpty" (list .Values.trial.podLabels "{}") }}
podAnnotations: {{- include "kubetune.yamlOrEmpty" (list .Values.trial.podAnnotations "{}") }}
priorityClassName: {{ .Values.trial.priorityClassName | default "" | quote }}
kueueQueueName: {{ .Values.kueue.queueName | default "" | quote }}
kueuePriorityClass: {{ .Values.kueue.priorityClass | default "" | quote }}
{{- end }}

{{/*
Where trials run: nodeSelector, and with GPU sharing the node labels GKE puts
on a pool that shares its GPUs that way.
*/}}
{{- define "kubetune.trialNodeSelector" -}}
{{- $selector := deepCopy (.Values.nodeSelector | default dict) }}
{{- $sharing := .Values.gpu.sharing | default dict }}
{{- if $sharing.strategy }}
{{- $_ := set $selector "cloud.google.com/gke-gpu-sharing-strategy" $sharing.strategy }}
{{- if $sharing.maxClientsPerGpu }}
{{- $_ := set $selector "cloud.google.com/gke-max-shared-clients-per-gpu" (toString (int $sharing.maxClientsPerGpu)) }}
{{- end }}
{{- end }}
{{- toYaml $selector }}
{{- end }}

{{/*
A block value under a key: indented YAML when non-empty, else the given empty
literal on the key's line. Called as (list VALUE EMPTY).
*/}}
{{- define "kubetune.yamlOrEmpty" -}}
{{- $value := index . 0 }}
{{- if $value }}
{{- toYaml $value | nindent 2 }}
{{- else }}
{{- printf " %s" (index . 1) }}
{{- end }}
{{- end }}

{{/*
The volume and mount that give the read-only root filesystem a writable /tmp.
*/}}
{{- define "kubetune.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{/*
"true" where the chart makes the Study object: asked for, and its CRD (crds/)
installed, which Helm does before rendering the templates of an install
(`helm template` sees it with --api-versions kubetune.dev/v1alpha1/Study).
*/}}
{{- define "kubetune.studyResource" -}}
{{- if and .Values.studyResource.enabled (.Capabilities.APIVersions.Has "kubetune.dev/v1alpha1/Study") -}}
true
{{- end }}
{{- end }}
