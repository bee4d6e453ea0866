// Package deploy holds the deployment tests: the compose stack (images,
// demo agents, promtool), the Grafana dashboards (strict loading, PromQL,
// metric names against real scrapes) and the Helm chart (lint, template,
// strict decoding into the Kubernetes API types). It is a separate module
// so that client-go, the Grafana SDK and Prometheus stay out of the main
// module; `make test` runs it.
package deploy
