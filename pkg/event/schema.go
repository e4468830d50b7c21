package event

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Schema is an event type's JSON Schema for its events' data, compiled. An event whose data
// fails it is refused: a 422 from POST /events, a rejection with reason "schema" on NATS.
type Schema struct {
	s *jsonschema.Schema
}

// MaxSchemaBytes bounds a schema document as the API accepts it.
const MaxSchemaBytes = 64 << 10

var printer = message.NewPrinter(language.English)

// CompileSchema compiles a JSON Schema document (draft 2020-12 unless its $schema says
// another draft). It loads nothing from outside: a $ref to another document is an error, so a
// schema can neither read local files nor make the service fetch URLs.
func CompileSchema(raw []byte) (*Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, errors.New("is not valid JSON")
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, errors.New("must be a JSON object (a JSON Schema)")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{}) // no scheme: nothing is ever loaded
	const loc = "urn:hookline:event-data"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, err
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, errors.New("is not a valid JSON Schema: " + oneLine(err.Error()))
	}
	return &Schema{s: s}, nil
}

// Validate checks data (a JSON object's bytes) against the schema. It returns nil or a
// *FieldError naming the first failing path under "data" ("data.amount", "data.items[2]").
func (s *Schema) Validate(data []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return &FieldError{Field: "data", Problem: "is not valid JSON"}
	}
	err = s.s.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &FieldError{Field: "data", Problem: "does not match the event type's schema: " + oneLine(err.Error())}
	}
	leaf := firstLeaf(ve)
	path, v := "data", inst
	for _, tok := range leaf.InstanceLocation {
		switch x := v.(type) {
		case []any:
			n, _ := strconv.Atoi(tok)
			path += "[" + strconv.Itoa(n) + "]"
			if n >= 0 && n < len(x) {
				v = x[n]
			}
		case map[string]any:
			path += pathKey(tok)
			v = x[tok]
		default:
			path += pathKey(tok)
		}
	}
	return &FieldError{Field: path, Problem: "does not match the event type's schema: " + oneLine(leaf.ErrorKind.LocalizedString(printer))}
}

// firstLeaf follows the first cause down to an error with no causes: the most precise one.
func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		e = e.Causes[0]
	}
	return e
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// Schemas caches compiled schemas by their document's bytes, so a schema shared by every
// event of a type is compiled once. It is dropped whole past maxSchemas entries.
type Schemas struct {
	mu sync.Mutex
	m  map[string]*Schema
}

const maxSchemas = 1000

// Get returns raw compiled, from the cache when it was compiled before.
func (c *Schemas) Get(raw []byte) (*Schema, error) {
	c.mu.Lock()
	s, ok := c.m[string(raw)]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := CompileSchema(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxSchemas {
		c.m = map[string]*Schema{}
	}
	c.m[string(raw)] = s
	return s, nil
}

// StorableJSON is nil when PostgreSQL's jsonb can store the JSON text raw, else a *FieldError
// naming the path of the first string it cannot (under field): see Decode's check of data.
func StorableJSON(field string, raw []byte) error { return checkStorable(field, raw) }
