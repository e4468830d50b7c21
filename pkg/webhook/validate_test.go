package webhook

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidateURL(t *testing.T) {
	long := "https://example.com/" + strings.Repeat("a", MaxURLLen-len("https://example.com/"))
	tests := []struct {
		in      string
		want    string
		problem string // substring of the FieldError's problem; "" = valid
	}{
		{"https://example.com/hook", "https://example.com/hook", ""},
		{"  http://example.com:8080/a?b=c  ", "http://example.com:8080/a?b=c", ""},
		{"HTTPS://Example.com", "HTTPS://Example.com", ""},
		{"http://127.0.0.1:9000/", "http://127.0.0.1:9000/", ""}, // refused at dial time, not here
		{"http://[::1]/x", "http://[::1]/x", ""},
		{long, long, ""},
		{"", "", "required"},
		{"   ", "", "required"},
		{long + "a", "", "at most 2048"},
		{"ftp://example.com/file", "", "http or https"},
		{"javascript:alert(1)", "", "http or https"},
		{"example.com/hook", "", "http or https"},
		{"//example.com/hook", "", "http or https"},
		{"http://", "", "host"},
		{"http:///path", "", "host"},
		{"http://:8080/path", "", "host"},
		{"http:example.com", "", "host"},
		{"https://user:pass@example.com/", "", "user name or password"},
		{"https://user@example.com/", "", "user name or password"},
		{"http://exa mple.com/", "", "not a valid URL"},
		{"http://example.com/\r\nHost: evil", "", "not a valid URL"},
	}
	for _, tt := range tests {
		got, err := ValidateURL(tt.in)
		if tt.problem == "" {
			if err != nil || got != tt.want {
				t.Errorf("ValidateURL(%.40q) = %q, %v, want %q, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "url" || !strings.Contains(fe.Problem, tt.problem) {
			t.Errorf("ValidateURL(%.40q) = %q, %v, want a url FieldError mentioning %q", tt.in, got, err, tt.problem)
		}
	}
}

func TestValidateHeaders(t *testing.T) {
	tooMany := map[string]string{}
	for i := range MaxHeaders + 1 {
		tooMany[fmt.Sprintf("X-H%d", i)] = "v"
	}
	enough := map[string]string{}
	for i := range MaxHeaders {
		enough[fmt.Sprintf("X-H%d", i)] = "v"
	}
	tests := []struct {
		name    string
		in      map[string]string
		problem string // substring of the FieldError's problem; "" = valid
	}{
		{"nil", nil, ""},
		{"ordinary", map[string]string{"Authorization": "Bearer abc", "X-Tenant": "42", "x-trace": ""}, ""},
		{"tab in value", map[string]string{"X-A": "a\tb"}, ""},
		{"non-ASCII value", map[string]string{"X-A": "café"}, ""},
		{"token punctuation", map[string]string{"X-!#$%&'*+-.^_`|~": "v"}, ""},
		{"32 headers", enough, ""},
		{"1 KiB value", map[string]string{"X-A": strings.Repeat("v", MaxHeaderValueLen)}, ""},
		{"33 headers", tooMany, "at most 32"},
		{"long value", map[string]string{"X-A": strings.Repeat("v", MaxHeaderValueLen+1)}, `"X-A"`},
		{"CR", map[string]string{"X-A": "a\rb"}, `"X-A"`},
		{"LF", map[string]string{"X-A": "a\nInjected: yes"}, `"X-A"`},
		{"NUL", map[string]string{"X-A": "a\x00"}, `"X-A"`},
		{"DEL", map[string]string{"X-A": "a\x7f"}, `"X-A"`},
		{"webhook-signature", map[string]string{"webhook-signature": "v1,x"}, `"webhook-signature"`},
		{"Webhook-Id", map[string]string{"Webhook-Id": "x"}, `"Webhook-Id"`},
		{"Host", map[string]string{"Host": "evil.example"}, `"Host"`},
		{"host", map[string]string{"host": "evil.example"}, `"host"`},
		{"Content-Length", map[string]string{"Content-Length": "0"}, `"Content-Length"`},
		{"Content-Type text/plain", map[string]string{"content-type": "text/plain"}, `"content-type" must be application/json`},
		{"Content-Type form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "the body is JSON"},
		{"Content-Type json-ish", map[string]string{"Content-Type": "application/jsonx"}, "the body is JSON"},
		{"Content-Type garbage", map[string]string{"Content-Type": ";;"}, "the body is JSON"},
		{"Content-Type JSON (seed example)", map[string]string{"Content-Type": "application/json"}, ""},
		{"Content-Type JSON any case, charset", map[string]string{"content-type": "Application/JSON; charset=utf-8"}, ""},
		{"Transfer-Encoding", map[string]string{"Transfer-Encoding": "chunked"}, `"Transfer-Encoding"`},
		{"Connection", map[string]string{"CONNECTION": "close"}, `"CONNECTION"`},
		{"TE", map[string]string{"TE": "trailers"}, `"TE"`},
		{"Upgrade", map[string]string{"Upgrade": "h2c"}, `"Upgrade"`},
		{"Proxy-Authorization", map[string]string{"Proxy-Authorization": "x"}, `"Proxy-Authorization"`},
		{"empty name", map[string]string{"": "v"}, "empty"},
		{"space in name", map[string]string{"X A": "v"}, `"X A"`},
		{"colon in name", map[string]string{"X-A:": "v"}, `"X-A:"`},
		{"CRLF in name", map[string]string{"X-A\r\nHost": "v"}, "X-A"},
		{"non-ASCII name", map[string]string{"X-Café": "v"}, "X-Caf"},
		{"long name", map[string]string{strings.Repeat("X", MaxHeaderNameLen+1): "v"}, "longer than"},
		{"case duplicate", map[string]string{"X-A": "1", "x-a": "2"}, `"x-a" repeats "X-A"`},
	}
	for _, tt := range tests {
		err := ValidateHeaders(tt.in)
		if tt.problem == "" {
			if err != nil {
				t.Errorf("%s: ValidateHeaders(%.60v) = %v, want nil", tt.name, tt.in, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "custom_headers" || !strings.Contains(fe.Problem, tt.problem) {
			t.Errorf("%s: ValidateHeaders(%.60v) = %v, want a custom_headers FieldError mentioning %q", tt.name, tt.in, err, tt.problem)
		}
	}
}

func FuzzValidateHeaders(f *testing.F) {
	f.Add("X-Tenant", "42", "Authorization", "Bearer x")
	f.Add("webhook-id", "x", "Host", "y")
	f.Add("X-A", "a\r\nB: c", "x-a", "")
	f.Add("Proxy-Connection", "\x00", "T\u00e9", "\t")
	f.Fuzz(func(t *testing.T, n1, v1, n2, v2 string) {
		h := map[string]string{n1: v1, n2: v2}
		err := ValidateHeaders(h)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "custom_headers" {
				t.Fatalf("ValidateHeaders(%q) = %#v, want a *FieldError for custom_headers", h, err)
			}
			return
		}
		for name, value := range h {
			lower := strings.ToLower(name)
			if strings.ContainsAny(name+value, "\r\n\x00") {
				t.Errorf("ValidateHeaders accepted %q: %q with CR, LF or NUL", name, value)
			}
			if strings.HasPrefix(lower, "webhook-") || refusedHeaders[lower] {
				t.Errorf("ValidateHeaders accepted refused header %q", name)
			}
			if name == "" || len(value) > MaxHeaderValueLen {
				t.Errorf("ValidateHeaders accepted %q: %d bytes", name, len(value))
			}
		}
	})
}

func nested(levels int) map[string]any {
	m := map[string]any{"leaf": true}
	for range levels - 1 {
		m = map[string]any{"n": m}
	}
	return m
}

func TestValidatePayload(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]any
		problem string // substring of the FieldError's problem; "" = valid
	}{
		{"nil", nil, ""},
		{"empty", map[string]any{}, ""},
		{"seed style", map[string]any{"customer": "acme", "plan": map[string]any{"tier": 2.0}, "tags": []any{"a", "b"}}, ""},
		{"32 levels", nested(32), ""},
		{"arrays count", map[string]any{"a": []any{[]any{nested(30)}}}, "at most 32"},
		{"33 levels", nested(33), "at most 32 levels deep, got 33"},
		{"16 KiB", map[string]any{"k": strings.Repeat("x", MaxPayloadBytes-len(`{"k":""}`))}, ""},
		{"over 16 KiB", map[string]any{"k": strings.Repeat("x", MaxPayloadBytes)}, "at most 16384 bytes"},
		{"type", map[string]any{"type": "x"}, `"type" is reserved`},
		{"timestamp", map[string]any{"timestamp": "x"}, `"timestamp" is reserved`},
		{"data", map[string]any{"data": map[string]any{}}, `"data" is reserved`},
		{"nested reserved names are fine", map[string]any{"meta": map[string]any{"type": "x"}}, ""},
		{"brackets inside strings", map[string]any{"s": strings.Repeat("[{", 40)}, ""},
		{"not encodable", map[string]any{"f": func() {}}, "JSON object"},
	}
	for _, tt := range tests {
		err := ValidatePayload(tt.in)
		if tt.problem == "" {
			if err != nil {
				t.Errorf("%s: ValidatePayload(%.60v) = %v, want nil", tt.name, tt.in, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "custom_payload" || !strings.Contains(fe.Problem, tt.problem) {
			t.Errorf("%s: ValidatePayload(%.60v) = %v, want a custom_payload FieldError mentioning %q", tt.name, tt.in, err, tt.problem)
		}
	}
}

func TestJSONDepth(t *testing.T) {
	for in, want := range map[string]int{
		`1`:                     0,
		`{}`:                    1,
		`{"a":[1,{"b":[]}]}`:    4,
		`{"a":"\"[[[\\"}`:       1,
		`[[],[[]],{"x":{}}]`:    3,
		`{"k":"\\\\","l":[[]]}`: 3,
	} {
		if got := jsonDepth([]byte(in)); got != want {
			t.Errorf("jsonDepth(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestFieldError(t *testing.T) {
	err := error(&FieldError{Field: "url", Problem: "is required"})
	if got, want := err.Error(), "url: is required"; got != want {
		t.Errorf("FieldError.Error() = %q, want %q", got, want)
	}
	var fp interface{ FieldProblem() (string, string) }
	if !errors.As(err, &fp) {
		t.Fatal("*FieldError has no FieldProblem method")
	}
	if f, p := fp.FieldProblem(); f != "url" || p != "is required" {
		t.Errorf("FieldProblem() = %q, %q, want url, is required", f, p)
	}
}
