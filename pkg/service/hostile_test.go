package service_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/webhook"
)

// Reliability scenario 18: malformed registration and PATCH bodies (truncated JSON, ill-typed
// url, a case variant of url, url twice, unknown field, trailing garbage after a valid object, a
// 2 MiB string, a form-encoded body with the bracket indexes that crashed Fiber's BodyParser) each
// get a 4xx envelope, never a 5xx; the process keeps serving and no row changes.
func TestMalformedRegistrationBodies(t *testing.T) {
	// Bodies up to 4 MiB are read, so the 2 MiB string reaches the parser (a body over the
	// limit is refused from its Content-Length, and its connection cut: TestIngressOversizeBodies).
	sys := servicetest.Start(t, func(c *config.Config) { c.MaxBodyBytes = 4 << 20 })
	rv := servicetest.NewReceiver(t)
	et := sys.EventTypeID(t, "upload.completed")
	w := sys.Register(t, 1, rv.URL, nil)
	valid := `{"event_type_id":"` + et + `","user_id":1,"url":"https://example.com/hook"}`
	bodies := []struct {
		name        string
		body        string
		contentType string
		status      int
	}{
		{"truncated JSON", `{"event_type_id":"` + et + `","user_id":1,"url":"https://exa`, "", 400},
		{"url a number", `{"event_type_id":"` + et + `","user_id":1,"url":123}`, "", 422},
		{"case variant of url", `{"event_type_id":"` + et + `","user_id":1,"url":"https://x.example/","URL":"http://127.0.0.1"}`, "", 422},
		{"unknown field", `{"event_type_id":"` + et + `","user_id":1,"url":"https://x.example/","admin":true}`, "", 422},
		{"url twice", `{"event_type_id":"` + et + `","user_id":1,"url":"https://x.example/","url":"http://127.0.0.1"}`, "", 422},
		{"trailing garbage", valid + ` {"url":"http://127.0.0.1"}`, "", 400},
		{"2 MiB string", `{"event_type_id":"` + et + `","user_id":1,"url":"https://x.example/` + strings.Repeat("a", 2<<20) + `"}`, "", 422},
		{"form-encoded, negative index", "a[-1]=x&url=https://x.example/", "application/x-www-form-urlencoded", 400},
		{"form-encoded, huge index", "a[18446744073704]=x&url=https://x.example/", "application/x-www-form-urlencoded", 400},
	}
	before := tableCounts(t, sys)
	for _, path := range []string{"POST /webhook/register", "PATCH /webhook/" + w.ID} {
		method, p, _ := strings.Cut(path, " ")
		for _, b := range bodies {
			status := b.status
			var headers []string
			if b.contentType != "" {
				headers = []string{"Content-Type", b.contentType}
			}
			r := sys.Do(t, method, p, b.body, headers...)
			if r.Status >= 500 || r.Status != status || !r.Error || r.Message == "" {
				t.Errorf("%s with %s = %d %.200s, want %d with the error envelope", path, b.name, r.Status, r.Raw, status)
			}
		}
	}
	if r := sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil); r.Status != 200 {
		t.Fatalf("after the bad bodies GET /webhook = %d: the process stopped serving", r.Status)
	}
	after := tableCounts(t, sys)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after malformed bodies", table, n, after[table])
		}
	}
	var got struct{ URL string }
	sys.Do(t, http.MethodGet, "/webhook/"+w.ID, nil).Decode(t, &got)
	if got.URL != rv.URL {
		t.Errorf("webhook url = %q after malformed PATCHes, want %q", got.URL, rv.URL)
	}
}

// Reliability scenario 24, at registration: with HOOKLINE_ALLOW_PRIVATE_TARGETS off, a URL whose
// host is a loopback, private, link-local, metadata or other special address literal (in any
// spelling netip reads: IPv6, IPv4-mapped, NAT64) is a 422 on url that does not say which range
// matched, on register and on PATCH; nothing is stored. Names are left to the dial-time guard.
func TestRegistrationRefusesPrivateLiterals(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.AllowPrivateTargets = false })
	et := sys.EventTypeID(t, "upload.completed")
	public := `{"event_type_id":"` + et + `","user_id":1,"url":"https://example.com/hook"}`
	var w struct{ ID string }
	if r := sys.Do(t, http.MethodPost, "/webhook/register", public); r.Status != 200 {
		t.Fatalf("register a public URL = %d %s", r.Status, r.Raw)
	} else {
		r.Decode(t, &w)
	}
	before := tableCounts(t, sys)
	for _, u := range []string{"http://127.0.0.1/", "http://[::1]:8080/", "http://10.0.0.1/", "http://172.16.0.1/",
		"http://192.168.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
		"http://[fd00:ec2::254]/", "http://100.100.100.200/", "http://0.0.0.0/", "http://[64:ff9b::a9fe:a9fe]/"} {
		reg := sys.Do(t, http.MethodPost, "/webhook/register", `{"event_type_id":"`+et+`","user_id":1,"url":"`+u+`"}`)
		patch := sys.Do(t, http.MethodPatch, "/webhook/"+w.ID, `{"url":"`+u+`"}`)
		for _, r := range []servicetest.Response{reg, patch} {
			if r.Status != 422 || !strings.Contains(r.Message, "url") || strings.Contains(string(r.Raw), "metadata") ||
				strings.Contains(string(r.Raw), "link-local") {
				t.Errorf("url %s = %d %s, want 422 on url naming no range", u, r.Status, r.Raw)
			}
		}
	}
	after := tableCounts(t, sys)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after refused registrations", table, n, after[table])
		}
	}
}

// Reliability scenario 19: with user 2's key, user 1's existing ids and random ones get the
// same 404, byte for byte once the id itself is replaced (no existence oracle), on every route
// that takes an id; malformed ids get a 404 envelope (DESIGN §10: a path id that is not a UUID
// is a 404), never a 5xx; nothing changes.
func TestNotFoundIsNoExistenceOracle(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	auth1 := []string{"Authorization", "Bearer " + userKey(t, sys, 1)}
	auth2 := []string{"Authorization", "Bearer " + userKey(t, sys, 2)}
	w := sys.Register(t, 1, rv.URL, nil, auth1...)
	up := sys.Upload(t, w.ID, "file", "a.txt", []byte("a"), auth1...)
	var file struct {
		FileID string `json:"file_id"`
	}
	up.Decode(t, &file)
	servicetest.Eventually(t, 10*time.Second, "delivery and file row", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 1 &&
			sys.Count(t, "SELECT count(*) FROM files") == 1
	})
	var deliveryID string
	if err := sys.DB.QueryRowContext(t.Context(), "SELECT id FROM deliveries").Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	routes := []struct {
		method, path string // %s is the id
		body         any
		existing     string // user 1's id for this route
	}{
		{"GET", "/webhook/%s", nil, w.ID},
		{"PATCH", "/webhook/%s", map[string]any{"url": "https://evil.example/"}, w.ID},
		{"DELETE", "/webhook/%s", nil, w.ID},
		{"POST", "/webhook/%s/rotate-secret", nil, w.ID},
		{"GET", "/webhook/%s/deliveries", nil, w.ID},
		{"POST", "/webhook/%s/recover?since=2020-01-01%%2000:00:00", nil, w.ID},
		{"GET", "/deliveries/%s", nil, deliveryID},
		{"POST", "/deliveries/%s/retry", nil, deliveryID},
		{"GET", "/files/%s", nil, file.FileID},
		{"UPLOAD", "%s", nil, w.ID},
	}
	before := tableCounts(t, sys)
	for _, rt := range routes {
		path := strings.ReplaceAll(rt.path, "%%", "%")
		call := func(id string) servicetest.Response {
			if rt.method == "UPLOAD" {
				return sys.Upload(t, id, "file", "b.txt", []byte("b"), auth2...)
			}
			return sys.Do(t, rt.method, strings.Replace(path, "%s", id, 1), rt.body, auth2...)
		}
		norm := func(r servicetest.Response, id string) string {
			return strings.ReplaceAll(string(r.Raw), id, "<id>")
		}
		random := uuid.NewString()
		theirs, missing := call(rt.existing), call(random)
		name := rt.method + " " + rt.path
		if theirs.Status != 404 || missing.Status != 404 {
			t.Errorf("%s: another user's id = %d, a random id = %d, want 404 for both", name, theirs.Status, missing.Status)
			continue
		}
		if a, b := norm(theirs, rt.existing), norm(missing, random); a != b {
			t.Errorf("%s: bodies differ, an existence oracle:\nanother user's id: %s\nrandom id:         %s", name, a, b)
		}
		nilID := call(uuid.Nil.String())
		if a, b := norm(nilID, uuid.Nil.String()), norm(missing, random); nilID.Status != 404 || a != b {
			t.Errorf("%s: the nil UUID = %d %s, want the random id's 404", name, nilID.Status, a)
		}
		for _, bad := range []string{"not-a-uuid", url.PathEscape("'; --"), "-1"} {
			r := call(bad)
			if r.Status != 404 || !r.Error {
				t.Errorf("%s with id %q = %d %.200s, want a 404 envelope", name, bad, r.Status, r.Raw)
			}
		}
	}
	after := tableCounts(t, sys)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after another tenant's and bad ids", table, n, after[table])
		}
	}
}

// Reliability scenario 23: a custom header that could split or smuggle a request is refused
// at registration with a 422 naming it, and stores nothing; and a legitimate delivery, read off
// the wire as bytes, has one Host (the URL's), one Content-Length equal to the body, and one of
// each signature header, made by the dispatcher.
func TestCustomHeaderInjection(t *testing.T) {
	sys := servicetest.Start(t, nil)
	rv := servicetest.NewReceiver(t)
	et := sys.EventTypeID(t, "upload.completed")
	bad := []struct{ name, value, named string }{
		{"X-A", "a\r\nX-Injected: 1", "X-A"},
		{"X A", "v", "X A"},
		{"X-A:", "v", "X-A:"},
		{"Host", "evil.example", "Host"},
		{"Content-Length", "0", "Content-Length"},
		{"Transfer-Encoding", "chunked", "Transfer-Encoding"},
		{"Connection", "close", "Connection"},
		{"Upgrade", "h2c", "Upgrade"},
		{"Proxy-Authorization", "Basic eA==", "Proxy-Authorization"},
		{"webhook-signature", "v1,x", "webhook-signature"},
		{"webhook-id", "msg_x", "webhook-id"},
		{"X-Big", strings.Repeat("v", 100<<10), "X-Big"},
	}
	before := tableCounts(t, sys)
	for _, h := range bad {
		r := sys.Do(t, http.MethodPost, "/webhook/register", map[string]any{"event_type_id": et, "user_id": 1, "url": rv.URL,
			"custom_headers": map[string]string{h.name: h.value}})
		var data struct{ Field, Problem string }
		r.Decode(t, &data)
		if r.Status != 422 || data.Field != "custom_headers" || !strings.Contains(data.Problem, strconv.Quote(h.named)) {
			t.Errorf("custom header %q = %d %+v, want 422 on custom_headers naming %q", h.name, r.Status, data, h.named)
		}
	}
	after := tableCounts(t, sys)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %d rows before, %d after refused registrations", table, n, after[table])
		}
	}

	// The wire: a bare TCP receiver keeps the request's header lines as sent.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type capture struct {
		lines []string
		body  []byte
	}
	got := make(chan capture, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(conn)
			var c capture
			length := 0
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					break
				}
				line = strings.TrimRight(line, "\r\n")
				if line == "" {
					break
				}
				c.lines = append(c.lines, line)
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
					length, _ = strconv.Atoi(strings.TrimSpace(v))
				}
			}
			c.body = make([]byte, length)
			_, _ = io.ReadFull(br, c.body)
			_, _ = conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			conn.Close()
			select {
			case got <- c:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	hook := "http://" + ln.Addr().String() + "/hook"
	w := sys.Register(t, 1, hook, map[string]any{"custom_headers": map[string]string{"X-Tenant": "42"}})
	publishMany(t, natsConn(t, sys), "wire", 1, 1, w.ID)
	var c capture
	select {
	case c = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the delivery never reached the bare receiver")
	}
	if len(c.lines) == 0 || !strings.HasPrefix(c.lines[0], "POST /hook HTTP/1.1") {
		t.Fatalf("request line = %q, want POST /hook HTTP/1.1", c.lines)
	}
	count := map[string][]string{}
	for _, line := range c.lines[1:] {
		k, v, _ := strings.Cut(line, ":")
		count[strings.ToLower(k)] = append(count[strings.ToLower(k)], strings.TrimSpace(v))
	}
	for name, want := range map[string]string{"host": ln.Addr().String(), "content-length": strconv.Itoa(len(c.body)), "x-tenant": "42"} {
		if vs := count[name]; len(vs) != 1 || vs[0] != want {
			t.Errorf("header %s on the wire = %q, want exactly one %q", name, vs, want)
		}
	}
	for _, name := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		if len(count[name]) != 1 {
			t.Errorf("header %s on the wire = %q, want exactly one", name, count[name])
		}
	}
	if vs := count["transfer-encoding"]; len(vs) != 0 {
		t.Errorf("transfer-encoding on the wire = %q, want none (the body has a Content-Length)", vs)
	}
	if len(c.body) == 0 {
		t.Error("empty body")
	}
}

// Reliability scenario 28(b), the end of the overlap: once a rotation's overlap is over (24 h;
// here moved into the past in the row), deliveries carry one signature, by the new secret
// only. (During the overlap both sign, new first: TestWebhookLifecycle, TestSignRotation.)
func TestRotationOverlapEnds(t *testing.T) {
	sys := servicetest.Start(t, nil)
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	r := sys.Do(t, http.MethodPost, "/webhook/"+w.ID+"/rotate-secret", nil)
	var rot struct {
		Secret string `json:"secret"`
	}
	r.Decode(t, &rot)
	if r.Status != 200 || rot.Secret == "" {
		t.Fatalf("rotate = %d %s", r.Status, r.Raw)
	}
	if _, err := sys.DB.ExecContext(t.Context(), `UPDATE webhook_registrations SET previous_secret_until = now() - interval '1 second'
		WHERE id = $1 AND previous_secret IS NOT NULL`, w.ID); err != nil {
		t.Fatal(err)
	}
	// The dispatcher reads the row again within its cache's TTL (about 1 s): send one event at
	// a time until a delivery reflects the row, at most 15 s.
	start := time.Now()
	for i := 0; ; i++ {
		publishMany(t, nc, "after-overlap-"+strconv.Itoa(i), 1, 1, w.ID)
		servicetest.Eventually(t, 10*time.Second, "the delivery", func() bool { return rv.Count() == i+1 })
		g := rv.Got()[i]
		if sigs := strings.Fields(g.Signature); len(sigs) == 1 {
			now := time.Now()
			if err := webhook.Verify(webhook.Secret(rot.Secret), g.ID, g.Timestamp, g.Signature, g.Body, now, 5*time.Minute); err != nil {
				t.Fatalf("the one signature does not verify with the new secret: %v", err)
			}
			if err := webhook.Verify(webhook.Secret(w.Secret), g.ID, g.Timestamp, g.Signature, g.Body, now, 5*time.Minute); err == nil {
				t.Fatal("the old secret still verifies after the overlap")
			}
			return
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("still %d signatures 15 s after the overlap ended: %q", len(strings.Fields(g.Signature)), g.Signature)
		}
	}
}
