// Package tools holds the static checks of the deployment files: the Dockerfile (parsed
// and linted with BuildKit's own Dockerfile frontend), the Helm chart's rendered
// manifests and configuration, the alert rules' runbook links and the Grafana dashboard.
// It is a module of its own so that its dependencies never enter fhirlake's go.mod.
// deploy/check runs it.
package tools
