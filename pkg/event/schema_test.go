package event

import (
	"errors"
	"testing"
)

func TestSchemaValidate(t *testing.T) {
	s, err := CompileSchema([]byte(`{"type":"object","required":["amount"],"properties":{
		"amount":{"type":"integer","minimum":0},
		"items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"}}}},
		"a.b":{"type":"string"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ data, field string }{
		{`{"amount":5,"items":[{"sku":"x"}]}`, ""},
		{`{}`, "data"},
		{`{"amount":-1}`, "data.amount"},
		{`{"amount":1,"items":[{"sku":"x"},{"sku":2}]}`, "data.items[1].sku"},
		{`{"amount":1,"a.b":3}`, `data["a.b"]`},
	} {
		err := s.Validate([]byte(tc.data))
		var fe *FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("Validate(%s) = %v, want nil", tc.data, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
			t.Errorf("Validate(%s) = %v, want a field error on %s", tc.data, err, tc.field)
		}
	}
}

func TestCompileSchemaRefusesExternalRefs(t *testing.T) {
	for _, doc := range []string{
		`{"$ref":"file:///etc/passwd"}`,
		`{"$ref":"http://127.0.0.1:1/x.json"}`,
		`{"type":"nonsense"}`,
		`[1]`,
		`not json`,
	} {
		if _, err := CompileSchema([]byte(doc)); err == nil {
			t.Errorf("CompileSchema(%s) = nil error, want one", doc)
		}
	}
	if _, err := CompileSchema([]byte(`{"$schema":"https://json-schema.org/draft/2020-12/schema","$defs":{"p":{"type":"integer"}},"properties":{"n":{"$ref":"#/$defs/p"}}}`)); err != nil {
		t.Errorf("CompileSchema(local $ref) = %v", err)
	}
}
