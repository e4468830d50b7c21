// Command processor consumes EVENTS, persists files and deliveries, and publishes one DELIVERIES message per target.
package main

import "github.com/hookline/hookline/pkg/service"

func main() { service.Main(service.Processor) }
