{{/* Names and labels. */}}
{{- define "fhirlake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fhirlake.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "fhirlake.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fhirlake.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fhirlake.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "fhirlake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fhirlake
{{- end -}}

{{/* selectorLabels: call with (dict "ctx" . "component" "consumer"). */}}
{{- define "fhirlake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fhirlake.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "fhirlake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fhirlake.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fhirlake.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The environment variable holding a tenant's key: FHIRLAKE_TENANT_<NAME>_<WHAT>. */}}
{{- define "fhirlake.tenantEnv" -}}
{{- printf "FHIRLAKE_TENANT_%s_%s" (.name | upper | replace "-" "_") .what -}}
{{- end -}}

{{/* The consumer's grace period: longer than the last flush's age plus the shutdown bound. */}}
{{- define "fhirlake.consumerGrace" -}}
{{- $floor := add (int .Values.flush.maxAgeSeconds) (int .Values.shutdownTimeoutSeconds) -}}
{{- $grace := int .Values.consumer.terminationGracePeriodSeconds -}}
{{- if eq $grace 0 -}}
{{- $grace = add $floor 15 -}}
{{- else if le $grace $floor -}}
{{- fail (printf "consumer.terminationGracePeriodSeconds (%d) must be longer than flush.maxAgeSeconds + shutdownTimeoutSeconds (%d): a pod killed before its last flush and commit replays that range" $grace $floor) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* Every check of the values that the templates rely on. */}}
{{- define "fhirlake.validate" -}}
{{- $parts := int .Values.kafka.partitions -}}
{{- if lt $parts 1 -}}
{{- fail "kafka.partitions: the partition count of the consumed topics is required (at least 1)" -}}
{{- end -}}
{{- if gt (int .Values.consumer.replicas) $parts -}}
{{- fail (printf "consumer.replicas (%d) exceeds kafka.partitions (%d): a consumer group gives each partition to one member, the others would sit idle" (int .Values.consumer.replicas) $parts) -}}
{{- end -}}
{{- if .Values.consumer.autoscaling.enabled -}}
{{- if gt (int .Values.consumer.autoscaling.maxReplicas) $parts -}}
{{- fail (printf "consumer.autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d)" (int .Values.consumer.autoscaling.maxReplicas) $parts) -}}
{{- end -}}
{{- if gt (int .Values.consumer.autoscaling.minReplicas) (int .Values.consumer.autoscaling.maxReplicas) -}}
{{- fail "consumer.autoscaling.minReplicas exceeds maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- if not .Values.tenants -}}
{{- fail "tenants: at least one tenant is required (name, bucket, and credentials.secretName or roleArn)" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.tenants -}}
{{- if not (regexMatch "^[a-z0-9][a-z0-9-]{0,62}$" (toString .name)) -}}
{{- fail (printf "tenants: name %q must be lowercase letters, digits and dashes" (toString .name)) -}}
{{- end -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "tenants: %q appears twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- if not .bucket -}}
{{- fail (printf "tenants[%s].bucket: required" .name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.query.tls.clientCA.secretName (not .Values.query.tls.secretName) -}}
{{- fail "query.tls.clientCA.secretName: client certificates need TLS: set query.tls.secretName" -}}
{{- end -}}
{{- if not (has .Values.compactor.mode (list "cronjob" "daemon")) -}}
{{- fail "compactor.mode: cronjob or daemon" -}}
{{- end -}}
{{- include "fhirlake.validateKafkaSecurity" . -}}
{{- include "fhirlake.validateIceberg" . -}}
{{- end -}}

{{/* kafka.tls and kafka.sasl: what each mechanism needs. */}}
{{- define "fhirlake.validateKafkaSecurity" -}}
{{- $tls := .Values.kafka.tls -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- if and (not $tls.enabled) (or $tls.secretName $tls.serverName) -}}
{{- fail "kafka.tls: secretName or serverName set, but kafka.tls.enabled is false" -}}
{{- end -}}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) -}}
{{- fail "kafka.tls: set both certKey and keyKey (a client certificate and its key), or neither" -}}
{{- end -}}
{{- if and (not $tls.secretName) $tls.certKey -}}
{{- fail "kafka.tls.certKey: needs kafka.tls.secretName, the Secret holding the client certificate" -}}
{{- end -}}
{{- $m := toString $sasl.mechanism -}}
{{- if and $m (not (has $m (list "plain" "scram-sha-256" "scram-sha-512" "oauthbearer" "aws-msk-iam"))) -}}
{{- fail (printf "kafka.sasl.mechanism: %q is not one of plain, scram-sha-256, scram-sha-512, oauthbearer, aws-msk-iam" $m) -}}
{{- end -}}
{{- if and (has $m (list "plain" "scram-sha-256" "scram-sha-512")) (not $sasl.secretName) -}}
{{- fail (printf "kafka.sasl.secretName: the Secret holding the user and password is required with %s" $m) -}}
{{- end -}}
{{- if eq $m "oauthbearer" -}}
{{- if eq (empty $sasl.oauth.tokenUrl) (empty $sasl.oauth.serviceAccountTokenAudience) -}}
{{- fail "kafka.sasl.oauth: oauthbearer takes tokenUrl (with secretName holding the client id and secret) or serviceAccountTokenAudience, one of them" -}}
{{- end -}}
{{- if and $sasl.oauth.tokenUrl (not $sasl.secretName) -}}
{{- fail "kafka.sasl.secretName: the Secret holding the OAuth client id and secret is required with oauth.tokenUrl" -}}
{{- end -}}
{{- if and $sasl.oauth.serviceAccountTokenAudience .Values.consumer.autoscaling.enabled (not .Values.consumer.autoscaling.authenticationRef) -}}
{{- fail "consumer.autoscaling: KEDA cannot use the pods' service-account token (kafka.sasl.oauth.serviceAccountTokenAudience); give consumer.autoscaling.authenticationRef" -}}
{{- end -}}
{{- end -}}
{{- if and (eq $m "aws-msk-iam") (not $tls.enabled) -}}
{{- fail "kafka.sasl: aws-msk-iam needs kafka.tls.enabled (MSK's IAM listener takes TLS only)" -}}
{{- end -}}
{{- if and (eq $m "aws-msk-iam") .Values.consumer.autoscaling.enabled (not .Values.consumer.autoscaling.authenticationRef) (not $sasl.aws.region) -}}
{{- fail "kafka.sasl.aws.region: KEDA needs the MSK cluster's region to read the lag with aws-msk-iam" -}}
{{- end -}}
{{- end -}}

{{/* Where the kafka.tls Secret and the projected Kafka token are mounted. */}}
{{- define "fhirlake.kafkaTLSDir" -}}/var/run/secrets/fhirlake/kafka-tls{{- end -}}
{{- define "fhirlake.kafkaTokenDir" -}}/var/run/secrets/fhirlake/kafka-token{{- end -}}

{{/* The configuration's kafka.tls and kafka.sasl: a dict with "tls" and "sasl" when set. */}}
{{- define "fhirlake.kafkaSecurity" -}}
{{- $out := dict -}}
{{- $tls := .Values.kafka.tls -}}
{{- if $tls.enabled -}}
{{- $t := dict "enabled" true -}}
{{- $dir := include "fhirlake.kafkaTLSDir" . -}}
{{- if and $tls.secretName $tls.caKey }}{{ $_ := set $t "ca_file" (printf "%s/%s" $dir $tls.caKey) }}{{ end -}}
{{- if and $tls.secretName $tls.certKey -}}
{{- $_ := set $t "cert_file" (printf "%s/%s" $dir $tls.certKey) -}}
{{- $_ := set $t "key_file" (printf "%s/%s" $dir $tls.keyKey) -}}
{{- end -}}
{{- with $tls.serverName }}{{ $_ := set $t "server_name" . }}{{ end -}}
{{- $_ := set $out "tls" $t -}}
{{- end -}}
{{- $sasl := .Values.kafka.sasl -}}
{{- with $sasl.mechanism -}}
{{- $s := dict "mechanism" . -}}
{{- if has . (list "plain" "scram-sha-256" "scram-sha-512") -}}
{{- $_ := set $s "username_env" "FHIRLAKE_KAFKA_USERNAME" -}}
{{- $_ := set $s "password_env" "FHIRLAKE_KAFKA_PASSWORD" -}}
{{- else if and (eq . "oauthbearer") $sasl.oauth.tokenUrl -}}
{{- $o := dict "token_url" $sasl.oauth.tokenUrl "client_id_env" "FHIRLAKE_KAFKA_OAUTH_CLIENT_ID" "client_secret_env" "FHIRLAKE_KAFKA_OAUTH_CLIENT_SECRET" -}}
{{- with $sasl.oauth.scopes }}{{ $_ := set $o "scopes" . }}{{ end -}}
{{- $_ := set $s "oauth" $o -}}
{{- else if eq . "oauthbearer" -}}
{{- $_ := set $s "token_file" (printf "%s/token" (include "fhirlake.kafkaTokenDir" $)) -}}
{{- else if eq . "aws-msk-iam" -}}
{{- $a := dict -}}
{{- with $sasl.aws.region }}{{ $_ := set $a "region" . }}{{ end -}}
{{- with $sasl.aws.roleArn }}{{ $_ := set $a "role_arn" . }}{{ end -}}
{{- if $a }}{{ $_ := set $s "aws" $a }}{{ end -}}
{{- end -}}
{{- $_ := set $out "sasl" $s -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The fhirlake configuration shared by every workload. */}}
{{- define "fhirlake.config" -}}
{{- $cfg := dict -}}
{{- $_ := set $cfg "kafka" (dict
  "brokers" .Values.kafka.brokers
  "topics" .Values.kafka.topics
  "group" .Values.kafka.group
  "dead_letter_topic" .Values.kafka.deadLetterTopic
  "client_id" (include "fhirlake.fullname" .)
  "partitions" (int .Values.kafka.partitions)
  "replication_factor" (int .Values.kafka.replicationFactor)
  "session_timeout" (printf "%ds" (int .Values.kafka.sessionTimeoutSeconds))
  "rebalance_timeout" (printf "%ds" (int .Values.kafka.rebalanceTimeoutSeconds))) -}}
{{- $_ = mustMergeOverwrite $cfg.kafka (include "fhirlake.kafkaSecurity" . | fromYaml) -}}
{{- $_ = set $cfg "routing" (deepCopy .Values.routing) -}}
{{- $_ = set $cfg "flush" (dict
  "max_rows" (int .Values.flush.maxRows)
  "max_bytes" (toString .Values.flush.maxBytes)
  "max_age" (printf "%ds" (int .Values.flush.maxAgeSeconds))) -}}
{{- $_ = set $cfg "memory" (dict "max_buffered_bytes" (toString .Values.memory.maxBufferedBytes)) -}}
{{- $_ = set $cfg "metrics" (dict "listen" "0.0.0.0:9464") -}}
{{- $_ = set $cfg "shutdown_timeout" (printf "%ds" (int .Values.shutdownTimeoutSeconds)) -}}
{{- $_ = set $cfg "work_dir" "/var/lib/fhirlake/work" -}}
{{- $_ = set $cfg "compact" (mustMergeOverwrite (dict "schedule" .Values.compactor.schedule) (deepCopy .Values.compactor.config)) -}}
{{- $serve := deepCopy .Values.query.config -}}
{{- $_ = set $serve "listen" (printf "0.0.0.0:%d" (int .Values.query.service.port)) -}}
{{- if .Values.query.flight.enabled -}}
{{- $_ = set $serve "flight" (mustMergeOverwrite (dict "max_prepared_statements" (int .Values.query.flight.maxPreparedStatements)) (dict "listen" (printf "0.0.0.0:%d" (int .Values.query.flight.port)))) -}}
{{- end -}}
{{- with .Values.query.tls.secretName -}}
{{- $tls := dict "cert_file" "/etc/fhirlake-tls/tls.crt" "key_file" "/etc/fhirlake-tls/tls.key" "min_version" (toString $.Values.query.tls.minVersion) -}}
{{- with $.Values.query.tls.clientCA.secretName -}}
{{- $_ := set $tls "client_ca_file" (printf "/etc/fhirlake-client-ca/%s" (default "ca.crt" $.Values.query.tls.clientCA.key)) -}}
{{- end -}}
{{- $_ := set $serve "tls" $tls -}}
{{- end -}}
{{- $_ = set $cfg "serve" $serve -}}
{{- if .Values.receive.enabled -}}
{{- $receive := deepCopy .Values.receive.config -}}
{{- $_ = set $receive "listen" (printf "0.0.0.0:%d" (int .Values.receive.service.port)) -}}
{{- $_ = set $cfg "receive" $receive -}}
{{- end -}}
{{- $tenants := list -}}
{{- range .Values.tenants -}}
{{- $store := dict "type" "s3" "bucket" .bucket -}}
{{- with .prefix }}{{ $_ := set $store "prefix" . }}{{ end -}}
{{- with .endpoint }}{{ $_ := set $store "endpoint" . }}{{ end -}}
{{- $_ := set $store "region" (default "us-east-1" .region) -}}
{{- if .pathStyle }}{{ $_ := set $store "path_style" true }}{{ end -}}
{{- if and .credentials .credentials.secretName -}}
{{- $_ := set $store "access_key_env" (include "fhirlake.tenantEnv" (dict "name" .name "what" "ACCESS_KEY")) -}}
{{- $_ := set $store "secret_key_env" (include "fhirlake.tenantEnv" (dict "name" .name "what" "SECRET_KEY")) -}}
{{- end -}}
{{- with .roleArn }}{{ $_ := set $store "role_arn" . }}{{ end -}}
{{- with .externalId }}{{ $_ := set $store "external_id" . }}{{ end -}}
{{- with .stsEndpoint }}{{ $_ := set $store "sts_endpoint" . }}{{ end -}}
{{- with .encryption }}{{ $_ := set $store "encryption" (dict "mode" .mode "kms_key_id" (default "" .kmsKeyId)) }}{{ end -}}
{{- if .caBundle }}{{ $_ := set $store "ca_file" (include "fhirlake.caFile" .) }}{{ end -}}
{{- $t := dict "name" .name "store" $store -}}
{{- if and .fhir .fhir.baseUrl -}}
{{- $fhir := dict "base_url" .fhir.baseUrl -}}
{{- if .fhir.tokenSecret -}}
{{- $_ := set $fhir "token_env" (include "fhirlake.tenantEnv" (dict "name" .name "what" "FHIR_TOKEN")) -}}
{{- end -}}
{{- $_ := set $t "fhir" $fhir -}}
{{- end -}}
{{- $tenants = append $tenants $t -}}
{{- end -}}
{{- $_ = set $cfg "tenants" $tenants -}}
{{- if .Values.iceberg.enabled -}}
{{- $_ = set $cfg "iceberg" (include "fhirlake.icebergConfig" . | fromYaml) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.extraConfig)) -}}
{{- end -}}

{{/* The environment of every fhirlake container: the configuration and each tenant's keys. */}}
{{- define "fhirlake.env" -}}
- name: FHIRLAKE_CONFIG
  value: /etc/fhirlake/fhirlake.yaml
- name: HOME
  value: /tmp
{{- range .Values.tenants }}
{{- if and .credentials .credentials.secretName }}
- name: {{ include "fhirlake.tenantEnv" (dict "name" .name "what" "ACCESS_KEY") }}
  valueFrom:
    secretKeyRef:
      name: {{ .credentials.secretName }}
      key: {{ default "access-key-id" .credentials.accessKeyKey }}
- name: {{ include "fhirlake.tenantEnv" (dict "name" .name "what" "SECRET_KEY") }}
  valueFrom:
    secretKeyRef:
      name: {{ .credentials.secretName }}
      key: {{ default "secret-access-key" .credentials.secretKeyKey }}
{{- end }}
{{- if and .fhir .fhir.baseUrl .fhir.tokenSecret }}
- name: {{ include "fhirlake.tenantEnv" (dict "name" .name "what" "FHIR_TOKEN") }}
  valueFrom:
    secretKeyRef:
      name: {{ .fhir.tokenSecret.name }}
      key: {{ default "token" .fhir.tokenSecret.key }}
{{- end }}
{{- end }}
{{- $sasl := .Values.kafka.sasl }}
{{- if $sasl.secretName }}
{{- $user := "FHIRLAKE_KAFKA_USERNAME" }}
{{- $pass := "FHIRLAKE_KAFKA_PASSWORD" }}
{{- if eq (toString $sasl.mechanism) "oauthbearer" }}
{{- $user = "FHIRLAKE_KAFKA_OAUTH_CLIENT_ID" }}
{{- $pass = "FHIRLAKE_KAFKA_OAUTH_CLIENT_SECRET" }}
{{- end }}
- name: {{ $user }}
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.secretName }}
      key: {{ default "username" $sasl.usernameKey }}
- name: {{ $pass }}
  valueFrom:
    secretKeyRef:
      name: {{ $sasl.secretName }}
      key: {{ default "password" $sasl.passwordKey }}
{{- end }}
{{- $ice := .Values.iceberg }}
{{- if and $ice.enabled $ice.uriSecret.name }}
- name: FHIRLAKE_CATALOG_URI
  valueFrom:
    secretKeyRef:
      name: {{ $ice.uriSecret.name }}
      key: {{ default "uri" $ice.uriSecret.key }}
{{- end }}
{{- if and $ice.enabled $ice.tokenSecret.name }}
- name: FHIRLAKE_CATALOG_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $ice.tokenSecret.name }}
      key: {{ default "token" $ice.tokenSecret.key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Where a tenant's CA bundle (tenants[].caBundle) is mounted: a directory per tenant. */}}
{{- define "fhirlake.caDir" -}}
/etc/fhirlake-ca/{{ .name }}
{{- end -}}

{{- define "fhirlake.caFile" -}}
{{ include "fhirlake.caDir" . }}/{{ default "ca.crt" .caBundle.key }}
{{- end -}}

{{/* Volumes every workload mounts: the configuration, a scratch work_dir, /tmp and each
tenant's CA bundle. */}}
{{- define "fhirlake.volumeMounts" -}}
- name: config
  mountPath: /etc/fhirlake
  readOnly: true
- name: work
  mountPath: /var/lib/fhirlake/work
- name: tmp
  mountPath: /tmp
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: {{ include "fhirlake.kafkaTLSDir" . }}
  readOnly: true
{{- end }}
{{- if and (eq (toString .Values.kafka.sasl.mechanism) "oauthbearer") .Values.kafka.sasl.oauth.serviceAccountTokenAudience }}
- name: kafka-token
  mountPath: {{ include "fhirlake.kafkaTokenDir" . }}
  readOnly: true
{{- end }}
{{- range $i, $t := .Values.tenants }}
{{- if $t.caBundle }}
- name: tenant-ca-{{ $i }}
  mountPath: {{ include "fhirlake.caDir" $t }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{/* call with (dict "ctx" . "sizeLimit" "10Gi") */}}
{{- define "fhirlake.volumes" -}}
- name: config
  configMap:
    name: {{ include "fhirlake.fullname" .ctx }}
- name: work
  emptyDir:
    sizeLimit: {{ .sizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- $tls := .ctx.Values.kafka.tls }}
{{- if and $tls.enabled $tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ $tls.secretName }}
    defaultMode: 288 # 0440: readable by the pods' group (fsGroup)
{{- end }}
{{- $sasl := .ctx.Values.kafka.sasl }}
{{- if and (eq (toString $sasl.mechanism) "oauthbearer") $sasl.oauth.serviceAccountTokenAudience }}
- name: kafka-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ $sasl.oauth.serviceAccountTokenAudience | quote }}
          expirationSeconds: 3600
          path: token
{{- end }}
{{- range $i, $t := .ctx.Values.tenants }}
{{- if $t.caBundle }}
- name: tenant-ca-{{ $i }}
  configMap:
    name: {{ required (printf "tenants[%s].caBundle.configMapName: required" $t.name) $t.caBundle.configMapName }}
    items:
      - key: {{ default "ca.crt" $t.caBundle.key }}
        path: {{ default "ca.crt" $t.caBundle.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "fhirlake.podAnnotations" -}}
checksum/config: {{ include "fhirlake.config" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The compactor pod, shared by the CronJob and the daemon Deployment. */}}
{{- define "fhirlake.compactorPod" -}}
serviceAccountName: {{ include "fhirlake.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
# dbt is stopped with SIGTERM when a run is cancelled and has 10 s to exit.
terminationGracePeriodSeconds: 30
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: compactor
    image: {{ include "fhirlake.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      - compact
      - --log-format=json
      {{- if eq .Values.compactor.mode "daemon" }}
      - --daemon
      {{- else if .Values.compactor.pushgateway }}
      - --push-gateway={{ .Values.compactor.pushgateway }}
      {{- end }}
    env:
      {{- include "fhirlake.env" . | nindent 6 }}
    {{- if eq .Values.compactor.mode "daemon" }}
    ports:
      - name: metrics
        containerPort: 9464
    livenessProbe:
      httpGet: {path: /healthz, port: metrics}
      periodSeconds: 30
    {{- end }}
    resources:
      {{- toYaml .Values.compactor.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      {{- include "fhirlake.volumeMounts" . | nindent 6 }}
volumes:
  {{- include "fhirlake.volumes" (dict "ctx" . "sizeLimit" .Values.compactor.workDir.sizeLimit) | nindent 2 }}
{{- with .Values.compactor.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.compactor.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.compactor.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}


{{/* iceberg: what `fhirlake register` needs from the values. */}}
{{- define "fhirlake.validateIceberg" -}}
{{- $ice := .Values.iceberg -}}
{{- if $ice.enabled -}}
{{- $c := toString $ice.catalog -}}
{{- if not (has $c (list "sql" "rest")) -}}
{{- fail (printf "iceberg.catalog: %q is not sql (a PostgreSQL database) or rest (an Iceberg REST service)" $c) -}}
{{- end -}}
{{- if eq (empty $ice.uri) (empty $ice.uriSecret.name) -}}
{{- fail "iceberg: give the catalog's URL as iceberg.uri or, when it carries a password, iceberg.uriSecret.name (one of them)" -}}
{{- end -}}
{{- $uri := toString $ice.uri -}}
{{- if and (eq $c "sql") $uri (not (regexMatch "^postgres(ql)?://" $uri)) -}}
{{- fail (printf "iceberg.uri: %q is not a PostgreSQL URL (postgres://…); a sql catalog on a SQLite file cannot work in the chart: the register pod and the engines reading the tables do not share a file" $uri) -}}
{{- end -}}
{{- if and (eq $c "rest") $uri (not (regexMatch "^https?://" $uri)) -}}
{{- fail (printf "iceberg.uri: a rest catalog's URL is http:// or https://, got %q" $uri) -}}
{{- end -}}
{{- if and $ice.tokenSecret.name (ne $c "rest") -}}
{{- fail "iceberg.tokenSecret: only a rest catalog takes a bearer token" -}}
{{- end -}}
{{- if lt (int .Values.register.replicas) 0 -}}
{{- fail "register.replicas: must not be negative" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The configuration's iceberg section. */}}
{{- define "fhirlake.icebergConfig" -}}
{{- $ice := .Values.iceberg -}}
{{- $out := dict "catalog" $ice.catalog "name" $ice.name "warehouse" $ice.warehouse
  "interval" (toString $ice.interval) "snapshot_retention" (toString $ice.snapshotRetention)
  "keep_snapshots" (int $ice.keepSnapshots) -}}
{{- if $ice.uriSecret.name -}}
{{- $_ := set $out "uri_env" "FHIRLAKE_CATALOG_URI" -}}
{{- else -}}
{{- $_ := set $out "uri" $ice.uri -}}
{{- end -}}
{{- if $ice.tokenSecret.name }}{{ $_ := set $out "token_env" "FHIRLAKE_CATALOG_TOKEN" }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}
