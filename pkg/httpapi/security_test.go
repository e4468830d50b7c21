package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/httpapi"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

func TestSanitizeFileName(t *testing.T) {
	cases := map[string]string{
		"report.pdf":               "report.pdf",
		"../../etc/passwd":         "passwd",
		`..\..\windows\win.ini`:    "win.ini",
		"/abs/path/x.txt":          "x.txt",
		"..":                       "upload",
		".hidden":                  "hidden",
		"a\x00b\nc\rd.txt":         "a_b_c_d.txt",
		"evil\u202Etxt.exe":        "evil_txt.exe",
		"C:secret.txt":             "C_secret.txt",
		"":                         "upload",
		"   ":                      "upload",
		strings.Repeat("é", 200):   strings.Repeat("é", 127),
		"\xff\xfebad.txt":          "__bad.txt",
		"dir/":                     "dir",
		"name with spaces (1).jpg": "name with spaces (1).jpg",
	}
	for in, want := range cases {
		got := httpapi.SanitizeFileName(in)
		if got != want {
			t.Errorf("SanitizeFileName(%q) = %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, "/\\\x00\r\n") || strings.HasPrefix(got, ".") || len(got) > 255 {
			t.Errorf("SanitizeFileName(%q) = %q: unsafe", in, got)
		}
	}
}

// The stored object is named by the generated file id, never the client's name; the webhook's
// download_url fetches the bytes without a key until it expires; an altered link is refused.
func TestUploadNamesAndDownloadLinks(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.BlobStore = "dir" })
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	up := sys.Upload(t, w.ID, "file", "../../../../tmp/pwned.sh", []byte("#!/bin/sh\necho hi\n"))
	var f struct {
		FileID   string `json:"file_id"`
		FileName string `json:"file_name"`
	}
	up.Decode(t, &f)
	if up.Status != 200 || f.FileName != "pwned.sh" {
		t.Fatalf("upload = %d %s", up.Status, up.Raw)
	}
	var object string
	servicetest.Eventually(t, 10*time.Second, "file row", func() bool {
		return sys.DB.QueryRowContext(context.Background(), "SELECT object_name FROM files WHERE id = $1", f.FileID).Scan(&object) == nil
	})
	if object != f.FileID {
		t.Fatalf("object name = %q, want the file id %q", object, f.FileID)
	}
	servicetest.Eventually(t, 10*time.Second, "webhook", func() bool { return rv.Count() == 1 })
	var body struct {
		Data struct {
			DownloadURL string `json:"download_url"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rv.Got()[0].Body, &body); err != nil || body.Data.DownloadURL == "" {
		t.Fatalf("webhook body has no download_url: %s", rv.Got()[0].Body)
	}
	get := func(u string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		servicetest.CheckResponse(t, req, resp.StatusCode, resp.Header, b)
		return resp.StatusCode, string(b)
	}
	if code, content := get(body.Data.DownloadURL); code != 200 || content != "#!/bin/sh\necho hi\n" {
		t.Fatalf("download_url = %d %q", code, content)
	}
	// Reliability scenario 22: a download is never rendered by a browser as a page.
	resp, err := http.Get(body.Data.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("download headers: Content-Disposition %q, X-Content-Type-Options %q; want attachment and nosniff",
			cd, resp.Header.Get("X-Content-Type-Options"))
	}
	u, _ := url.Parse(body.Data.DownloadURL)
	q := u.Query()
	sig := q.Get("signature")
	// Altered: the first character replaced by a different one (never equal to the original).
	first := "A"
	if sig[0] == 'A' {
		first = "B"
	}
	altered := *u
	altered.RawQuery = url.Values{"expires": {q.Get("expires")}, "signature": {first + sig[1:]}}.Encode()
	// Expired: a link the server itself would have signed, with a validity that ended an hour
	// ago, so it is refused for its expiry alone. The same key signs a fresh link, which must
	// work: proof that the expired one is refused for its expiry, not its signature.
	linkKey := sys.Config.EncryptionKey
	if linkKey == nil { // the all-in-one made one in its data dir
		kept, err := os.ReadFile(filepath.Join(sys.Config.DataDir, "encryption.key"))
		if err != nil {
			t.Fatal(err)
		}
		if linkKey, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(kept))); err != nil {
			t.Fatal(err)
		}
	}
	fileID := uuid.MustParse(f.FileID)
	links := httpapi.NewLinks(linkKey, sys.URL, time.Hour)
	if code, content := get(links.URL(fileID, time.Now())); code != 200 || content != "#!/bin/sh\necho hi\n" {
		t.Fatalf("a fresh link signed by the test = %d %q: the test does not sign as the server does", code, content)
	}
	expired := links.URL(fileID, time.Now().Add(-2*time.Hour))
	for name, link := range map[string]string{"altered": altered.String(), "expired": expired,
		"no signature": strings.Split(body.Data.DownloadURL, "?")[0]} {
		code, content := get(link)
		if code != 403 && code != 401 || strings.Contains(content, "echo hi") {
			t.Errorf("%s link = %d %q, want 401/403 without the bytes", name, code, content)
		}
	}
}

// Signing secrets are stored encrypted: the database never holds the whsec_ value.
func TestSecretsEncryptedAtRest(t *testing.T) {
	sys := servicetest.Start(t, nil)
	w := sys.Register(t, 1, "https://example.com/hook", nil)
	var stored string
	if err := sys.DB.QueryRowContext(context.Background(), "SELECT secret FROM webhook_registrations WHERE id = $1", w.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "enc:v1:") || strings.Contains(stored, w.Secret) || strings.Contains(stored, "whsec_") {
		t.Fatalf("stored secret %q is not encrypted", stored)
	}
	key := apiKey(t, sys, 1)
	if n := sys.Count(t, "SELECT count(*) FROM api_keys"); n != 1 {
		t.Fatalf("api_keys holds %d rows, want the 1 key just made", n)
	}
	// Every row of every table, as text and with bytea columns also as their raw bytes
	// (encode(…, 'escape')): a key stored in clear, in any column or encoding of it, shows.
	dump := dumpDatabase(t, sys)
	for what, secret := range map[string]string{"api key": key, "signing secret": w.Secret, "whsec_ prefix": "whsec_"} {
		if strings.Contains(dump, secret) {
			t.Errorf("the database holds the %s in clear", what)
		}
	}
}

// dumpDatabase is every row of every table of the public schema as text, and every bytea
// value also as its bytes (escape encoding), one line each.
func dumpDatabase(t *testing.T, sys *servicetest.System) string {
	t.Helper()
	ctx := context.Background()
	rows, err := sys.DB.QueryContext(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	var queries []string
	seen := map[string]bool{}
	for rows.Next() {
		var table, column, typ string
		if err := rows.Scan(&table, &column, &typ); err != nil {
			t.Fatal(err)
		}
		if !seen[table] {
			seen[table] = true
			queries = append(queries, `SELECT t::text FROM "`+table+`" t`)
		}
		if typ == "bytea" {
			queries = append(queries, `SELECT encode("`+column+`", 'escape') FROM "`+table+`" WHERE "`+column+`" IS NOT NULL`)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(queries) == 0 {
		t.Fatal("no tables found to dump")
	}
	var b strings.Builder
	for _, q := range queries {
		rows, err := sys.DB.QueryContext(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return b.String()
}

// A user key over HOOKLINE_RATE_LIMIT gets 429 with Retry-After; admin keys are never limited.
func TestRateLimit(t *testing.T) {
	sys := servicetest.Start(t, func(c *config.Config) { c.RateLimit = 5 })
	key := apiKey(t, sys, 1)
	limited := 0
	for i := 0; i < 30; i++ {
		r := sys.Do(t, http.MethodGet, "/event_type", nil, "Authorization", "Bearer "+key)
		if r.Status == 429 {
			limited++
			if r.Header.Get("Retry-After") == "" || !r.Error {
				t.Fatalf("429 without Retry-After or envelope: %v %s", r.Header, r.Raw)
			}
		}
	}
	if limited == 0 {
		t.Fatal("30 quick requests at a limit of 5/s: none was limited")
	}
	for i := 0; i < 30; i++ {
		if r := sys.Do(t, http.MethodGet, "/event_type", nil); r.Status != 200 {
			t.Fatalf("admin request %d = %d, want 200: admin keys are never limited", i, r.Status)
		}
	}
}

// An upload announcing a huge body is refused with 413 before the body is read.
func TestHugeUploadRefused(t *testing.T) {
	sys := servicetest.Start(t, nil)
	w := sys.Register(t, 1, "https://example.com/hook", nil)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() {
		// The start of a form, then nothing: the announced gigabyte never comes.
		_, _ = pw.Write([]byte("--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n"))
	}()
	req, _ := http.NewRequest(http.MethodPost, sys.URL+"/upload_file/webhook_id/"+w.ID, pr)
	req.ContentLength = 1 << 30
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	req.Header.Set("Authorization", "Bearer "+servicetest.AdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	servicetest.CheckResponse(t, req, resp.StatusCode, resp.Header, b)
	if resp.StatusCode != 413 || !strings.Contains(string(b), `"error":true`) {
		t.Fatalf("1 GiB upload = %d %s, want 413 envelope", resp.StatusCode, b)
	}
}
