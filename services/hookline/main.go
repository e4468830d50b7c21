// Command hookline is the all-in-one: an embedded NATS server, migrations, and the ingress, processor and dispatcher in one process. It also runs `migrate up|down|status` and `healthcheck`.
package main

import "github.com/hookline/hookline/pkg/service"

func main() { service.Main(service.AllInOne) }
