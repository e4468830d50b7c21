// Command ingress serves Hookline's REST API: registrations, uploads and events, published to JetStream.
package main

import "github.com/hookline/hookline/pkg/service"

func main() { service.Main(service.Ingress) }
