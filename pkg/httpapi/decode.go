package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
)

// jsonObject reads the body as one JSON object, field by field, so every ill-typed field gets
// its own 422 naming it. 413 over MaxBodyBytes, 400 when the body is not a JSON object, 422
// naming a key that is not among known: a misspelt field is refused, never silently dropped.
func (a *API) jsonObject(c *fiber.Ctx, known []string) (fields, error) {
	body, err := a.body(c)
	if err != nil {
		return nil, err
	}
	f, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	if err := f.only(known); err != nil {
		return nil, err
	}
	return f, nil
}

type fields map[string]json.RawMessage

// decodeObject reads body as one JSON object, keeping each value raw. A key given twice is a
// 422 naming it: a map would keep the last one silently, and a proxy or log that reads the
// first would see another request than the one acted on.
func decodeObject(body []byte) (fields, error) {
	notObject := fail(fiber.StatusBadRequest, "the body must be a JSON object")
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	f := fields{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		key, _ := tok.(string) // inside an object, a token before its value is its key
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, notObject
		}
		if _, twice := f[key]; twice {
			return nil, fieldError(clip(key), "appears more than once in the body")
		}
		f[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(fiber.StatusBadRequest, "the body must be one JSON object")
	}
	return f, nil
}

// clip shortens a key for an error message: a key can be anything, a megabyte long.
func clip(k string) string {
	if len(k) > 64 {
		return strings.ToValidUTF8(k[:64], "") + "…"
	}
	return k
}

// only refuses a key outside known: a 422 naming the first in sorted order, and the others.
func (f fields) only(known []string) error {
	var unknown []string
	for k := range f {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown) // the same body always names the same field
	for i, k := range unknown {
		unknown[i] = clip(k)
	}
	problem := "is not a field of this body"
	if len(unknown) > 1 {
		problem += ", nor are " + quoted(unknown[1:])
	}
	return fieldError(unknown[0], problem+" (the fields are "+strings.Join(known, ", ")+")")
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

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

// intRange accepts a JSON integer from lo to hi (not 1.5, "1" or 1e3).
func (f fields) intRange(name string, lo, hi int) (int, error) {
	raw := strings.TrimSpace(string(f[name]))
	problem := fmt.Sprintf("must be an integer from %d to %d", lo, hi)
	var n json.Number
	if err := json.Unmarshal([]byte(raw), &n); err != nil || strings.ContainsAny(raw, ".eE\"") {
		return 0, fieldError(name, problem)
	}
	v, err := n.Int64()
	if err != nil || v < int64(lo) || v > int64(hi) {
		return 0, fieldError(name, problem)
	}
	return int(v), nil
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

// pathUUID reads a path id: anything that is not a UUID is notFound(missing), like an unknown
// id.
func pathUUID(c *fiber.Ctx, name string, missing error) (uuid.UUID, error) {
	s := c.Params(name)
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, notFound(missing, s)
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

func (f fields) bool(name string) (bool, error) {
	var b bool
	if err := json.Unmarshal(f[name], &b); err != nil {
		return false, fieldError(name, "must be true or false")
	}
	return b, nil
}

// page reads limit (1–100, default 50) and cursor.
func page(c *fiber.Ctx) (int, store.Cursor, error) {
	limit := 50
	if s := c.Query("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			return 0, store.Cursor{}, fieldError("limit", "must be an integer from 1 to 100")
		}
		limit = n
	}
	cur, err := store.ParseCursor(c.Query("cursor"))
	if err != nil { // store.ErrBadCursor
		return 0, store.Cursor{}, fieldError("cursor", "is not a cursor this API issued")
	}
	return limit, cur, nil
}

// parseTime reads a query time: the API's own format (UTC) or RFC3339.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.ParseInLocation(time.DateTime, s, time.UTC); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}
