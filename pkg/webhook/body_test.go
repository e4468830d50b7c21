package webhook

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRenderBody(t *testing.T) {
	ts := time.Date(2026, 11, 28, 13, 4, 5, 999_000_000, time.FixedZone("CET", 3600))
	tests := []struct {
		name   string
		typ    string
		data   string
		custom map[string]any
		want   string
	}{
		{
			name: "no custom payload",
			typ:  "upload.completed",
			data: `{"file_id":"f1","size":3}`,
			want: `{"type":"upload.completed","timestamp":"2026-11-28T12:04:05Z","data":{"file_id":"f1","size":3}}`,
		},
		{
			name:   "custom keys sorted after data",
			typ:    "upload.completed",
			data:   " {\n\"a\": 1}\n",
			custom: map[string]any{"zeta": 1.5, "alpha": "x", "mid": map[string]any{"b": nil, "a": []any{true}}},
			want:   `{"type":"upload.completed","timestamp":"2026-11-28T12:04:05Z","data":{` + "\n" + `"a": 1},"alpha":"x","mid":{"a":[true],"b":null},"zeta":1.5}`,
		},
		{
			name:   "empty custom payload",
			typ:    "a",
			data:   `{}`,
			custom: map[string]any{},
			want:   `{"type":"a","timestamp":"2026-11-28T12:04:05Z","data":{}}`,
		},
		{
			name: "type needing escapes",
			typ:  "a\"<b>\n",
			data: `{}`,
			want: `{"type":"a\"\u003cb\u003e\n","timestamp":"2026-11-28T12:04:05Z","data":{}}`,
		},
	}
	for _, tt := range tests {
		got, err := RenderBody(tt.typ, ts, json.RawMessage(tt.data), tt.custom)
		if err != nil {
			t.Errorf("%s: RenderBody(%q, %q, %v) = %v", tt.name, tt.typ, tt.data, tt.custom, err)
			continue
		}
		if diff := cmp.Diff(tt.want, string(got)); diff != "" {
			t.Errorf("%s: RenderBody(%q, %q, %v) mismatch (-want +got):\n%s", tt.name, tt.typ, tt.data, tt.custom, diff)
		}
		if !json.Valid(got) {
			t.Errorf("%s: RenderBody = %s, not valid JSON", tt.name, got)
		}
	}
}

func TestRenderBodyErrors(t *testing.T) {
	ts := time.Unix(0, 0)
	tests := []struct {
		data   string
		custom map[string]any
		field  string
	}{
		{"", nil, "data"},
		{"null", nil, "data"},
		{"[]", nil, "data"},
		{`"x"`, nil, "data"},
		{`{"a":`, nil, "data"},
		{`{} {}`, nil, "data"},
		{`{}`, map[string]any{"type": "x"}, "custom_payload"},
		{`{}`, map[string]any{"data": "x"}, "custom_payload"},
		{`{}`, map[string]any{"f": make(chan int)}, "custom_payload"},
	}
	for _, tt := range tests {
		got, err := RenderBody("t", ts, json.RawMessage(tt.data), tt.custom)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("RenderBody(%q, %v) = %s, %v, want a %s FieldError", tt.data, tt.custom, got, err, tt.field)
		}
	}
}

func FuzzRenderBody(f *testing.F) {
	f.Add("upload.completed", int64(1_800_000_000), []byte(`{"file_id":"f"}`), "customer", "acme", "n", 1.5)
	f.Add("", int64(-62135596800), []byte(`{}`), "", "", "\u2028", 0.0)
	f.Add("\"\\\x00<", int64(253402300799), []byte(` {"a":[1,{"b":null}]} `), "<&>", "\"", "k", -1e300)
	f.Fuzz(func(t *testing.T, typ string, unix int64, data []byte, k1, v1, k2 string, n2 float64) {
		custom := map[string]any{k1: v1, k2: n2}
		got, err := RenderBody(typ, time.Unix(unix, 0), data, custom)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("RenderBody error %#v is not a *FieldError", err)
			}
			return
		}
		var body map[string]any
		if err := json.Unmarshal(got, &body); err != nil {
			t.Fatalf("RenderBody(%q, %q, %v) = %s: not a JSON object: %v", typ, data, custom, got, err)
		}
		if body["type"] != asJSON(typ) {
			t.Errorf("RenderBody type = %q, want %q", body["type"], typ)
		}
		if _, ok := body["timestamp"].(string); !ok {
			t.Errorf("RenderBody(%q) has no string timestamp: %s", typ, got)
		}
		if _, ok := body["data"].(map[string]any); !ok {
			t.Errorf("RenderBody(%q) has no data object: %s", typ, got)
		}
		for k := range custom {
			if _, ok := body[asJSON(k)]; !ok {
				t.Errorf("RenderBody lost custom key %q: %s", k, got)
			}
		}
		// Deterministic: the same input renders the same bytes.
		if again, _ := RenderBody(typ, time.Unix(unix, 0), data, custom); string(again) != string(got) {
			t.Errorf("RenderBody not deterministic:\n%s\n%s", got, again)
		}
	})
}

// asJSON returns s as it reads back from JSON: encoding/json replaces each
// byte of invalid UTF-8 with U+FFFD.
func asJSON(s string) string {
	b, _ := json.Marshal(s)
	var back string
	_ = json.Unmarshal(b, &back)
	return back
}

func BenchmarkRenderBody(b *testing.B) {
	data := json.RawMessage(`{"file_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d","event_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9e",` +
		`"webhook_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9f","file_name":"report.pdf","size":123456,` +
		`"content_type":"application/pdf","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"uploaded_at":"2026-11-28T12:00:00Z","download_url":"https://hookline.example/files/0193a8f2/content?sig=abc&exp=1"}`)
	custom := map[string]any{"customer": "acme", "environment": "production", "tags": []any{"a", "b"}}
	ts := time.Unix(1_800_000_000, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := RenderBody("upload.completed", ts, data, custom); err != nil {
			b.Fatal(err)
		}
	}
}
