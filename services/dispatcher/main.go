// Command dispatcher delivers signed webhooks from DELIVERIES, records every attempt and schedules retries.
package main

import "github.com/hookline/hookline/pkg/service"

func main() { service.Main(service.Dispatcher) }
