package httpapi

import (
	_ "embed"

	"github.com/gofiber/fiber/v2"
)

// openAPI is the OpenAPI 3.1 description of this API. This file is its one source: the copy
// at docs/openapi.yaml must equal it (TestOpenAPICopyInDocs), and TestOpenAPICoversRoutes
// fails for a route, method or status the document lacks.
//
//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document the API serves at GET /openapi.yaml.
func OpenAPI() []byte { return openAPI }

// serveOpenAPI is GET /openapi.yaml, open to all: the document describes no secret.
func serveOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/yaml")
	return c.Send(openAPI)
}
