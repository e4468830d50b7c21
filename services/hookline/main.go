// Command hookline is the all-in-one: an embedded NATS server, migrations, and the ingress, processor and dispatcher in one process. It also runs `migrate up|down|status`, `healthcheck`, `apikey`, and the API client (`hookline help`: event-types, webhooks, deliveries, events, tail).
package main

import "github.com/hookline/hookline/pkg/service"

func main() { service.Main(service.AllInOne) }
