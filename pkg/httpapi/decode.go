package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// jsonObject reads the body as one JSON object, field by field, so every ill-typed field gets
// its own 422 naming it. 413 over MaxBodyBytes, 400 when the body is not a JSON object.
func (a *API) jsonObject(c *fiber.Ctx) (fields, error) {
	body := c.Body()
	if int64(len(body)) > a.opts.MaxBodyBytes {
		return nil, fail(fiber.StatusRequestEntityTooLarge, "request body over the limit of "+byteCount(a.opts.MaxBodyBytes))
	}
	var f fields
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil || f == nil {
		return nil, fail(fiber.StatusBadRequest, "the body must be a JSON object")
	}
	if dec.More() {
		return nil, fail(fiber.StatusBadRequest, "the body must be one JSON object")
	}
	return f, nil
}

type fields map[string]json.RawMessage

func (f fields) has(name string) bool {
	raw, ok := f[name]
	return ok && string(raw) != "null"
}

func (f fields) str(name string) (string, error) {
	var s string
	if err := json.Unmarshal(f[name], &s); err != nil {
		return "", fieldError(name, "must be a string")
	}
	return s, nil
}

func (f fields) uuid(name string) (uuid.UUID, error) {
	s, err := f.str(name)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, fieldError(name, "must be a UUID")
	}
	return id, nil
}

func (f fields) uuids(name string) ([]uuid.UUID, error) {
	var ss []string
	if err := json.Unmarshal(f[name], &ss); err != nil {
		return nil, fieldError(name, "must be an array of UUIDs")
	}
	if len(ss) == 0 || len(ss) > 100 {
		return nil, fieldError(name, "must hold 1 to 100 UUIDs")
	}
	seen := map[uuid.UUID]bool{}
	var out []uuid.UUID
	for _, s := range ss {
		id, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, fieldError(name, "must be an array of UUIDs")
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// positiveInt accepts a JSON integer above 0 (not 1.5, "1" or 1e3).
func (f fields) positiveInt(name string) (int64, error) {
	raw := strings.TrimSpace(string(f[name]))
	var n json.Number
	if err := json.Unmarshal([]byte(raw), &n); err != nil || strings.ContainsAny(raw, ".eE\"") {
		return 0, fieldError(name, "must be a positive integer")
	}
	v, err := n.Int64()
	if err != nil || v <= 0 {
		return 0, fieldError(name, "must be a positive integer")
	}
	return v, nil
}

func (f fields) object(name string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(f[name], &m); err != nil || m == nil {
		return nil, fieldError(name, "must be a JSON object")
	}
	return m, nil
}

func (f fields) stringMap(name string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(f[name], &m); err != nil || m == nil {
		return nil, fieldError(name, "must be an object of strings")
	}
	return m, nil
}

// pathUUID reads a path id: anything that is not a UUID is a 404, like an unknown id.
func pathUUID(c *fiber.Ctx, name, what string) (uuid.UUID, error) {
	s := c.Params(name)
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, fail(fiber.StatusNotFound, what+" not found")
	}
	return id, nil
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func jsonBool(raw json.RawMessage, b *bool) error { return json.Unmarshal(raw, b) }
