package httpapi

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"
)

// A body its route leaves unread closes the connection after the answer, so its bytes are
// never read as the next request on it (a request smuggled inside a body); a body read to its
// end, or none, keeps the connection.
func TestUnreadBodyClosesConnection(t *testing.T) {
	a, _ := keyAPI(t)
	for _, c := range []struct {
		name, method, path, key, body string
		status                        int
		closed                        bool
	}{
		{"no body", http.MethodGet, "/healthz", "", "", 200, false},
		{"body on a route that takes none", http.MethodGet, "/healthz", "", "GET /smuggled HTTP/1.1\r\n\r\n", 200, true},
		{"no key", http.MethodPost, "/event_type", "", `{"name":"a.b"}`, 401, true},
		{"read to its end", http.MethodPost, "/event_type", a.opts.AdminKey, `{"name":"a.b"}`, 200, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, c.path, strings.NewReader(c.body))
			req.ContentLength = int64(len(c.body))
			if c.key != "" {
				req.Header.Set("Authorization", "Bearer "+c.key)
			}
			resp, err := a.App().Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status || resp.Close != c.closed {
				t.Errorf("%s %s = %d, connection closed %v; want %d, %v", c.method, c.path, resp.StatusCode, resp.Close, c.status, c.closed)
			}
		})
	}
}

// A compressed body is held to the same limit once decoded: a small gzip of more than
// MaxBodyBytes of JSON is a 413, not a megabytes-large allocation.
func TestCompressedBodyLimit(t *testing.T) {
	a, _ := keyAPI(t)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(`{"name":"` + strings.Repeat("a", int(a.opts.MaxBodyBytes)) + `"}`))
	_ = w.Close()
	req, _ := http.NewRequest(http.MethodPost, "/event_type", bytes.NewReader(gz.Bytes()))
	req.Header.Set("Authorization", "Bearer "+a.opts.AdminKey)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := a.App().Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("%d bytes of gzip decoding to more than %d = %d, want 413", gz.Len(), a.opts.MaxBodyBytes, resp.StatusCode)
	}
}
