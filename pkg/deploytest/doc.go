// Package deploytest checks the deployment files against the code without a Docker engine:
// docker-compose.yaml (service names, build contexts, Dockerfile COPY sources, variables the
// code reads), each service binary built with GOWORK=off and run with the compose environment
// until /readyz answers and SIGTERM stops it with exit code 0, and the Grafana dashboard and
// Prometheus rules naming only series that exist. It has no code besides its tests.
package deploytest
