package event

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeRefusesUnstorableData(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, data, field, problem string
	}{
		{"NUL", `{"x":"a\u0000b"}`, "data.x", "NUL"},
		{"NUL nested", `{"a":{"list":[1,"ok","\u0000"]}}`, "data.a.list[2]", "NUL"},
		{"NUL in a key", `{"k\u0000":1}`, `data["k\x00"] (a key)`, "NUL"},
		{"NUL after values", `{"a":1,"b":[true,null,{"c":"x"}],"d":"\u0000"}`, "data.d", "NUL"},
		{"invalid UTF-8", "{\"x\":\"a\xffb\"}", "data.x", "valid UTF-8"},
		{"lone high surrogate", `{"x":"\ud800"}`, "data.x", "high surrogate"},
		{"lone low surrogate", `{"x":"\udc00z"}`, "data.x", "low surrogate"},
	}
	for _, tt := range tests {
		body := `{"type":"a.b","user_id":1,"data":` + tt.data + `}`
		_, err := Decode("", "", []byte(body), now)
		fe, ok := err.(*FieldError)
		if !ok || fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
			t.Errorf("%s: Decode(%q) = %v, want a FieldError on %q about %s", tt.name, body, err, tt.field, tt.problem)
		}
	}
	for _, data := range []string{`{"x":"a\\u0000b"}`, `{"x":"\ud83d\ude00"}`, `{"x":"é\u00e9"}`, `{"x":[1,2,{"y":"\n"}]}`} {
		body := `{"type":"a.b","user_id":1,"data":` + data + `}`
		if _, err := Decode("", "", []byte(body), now); err != nil {
			t.Errorf("Decode(%q) = %v, want nil (storable)", body, err)
		}
	}
}
