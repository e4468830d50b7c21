// Package chaostest holds Hookline's fault-injection suite (`make chaos`): the ingress,
// processor and dispatcher run as separate processes built from services/, with a nats-server
// process and a private PostgreSQL cluster the suite creates itself, and each scenario kills,
// stops or restarts one of them under load, then checks that every accepted event's deliveries
// arrived. The tests only run with HOOKLINE_CHAOS=1; docs/reliability.md holds their figures.
package chaostest
