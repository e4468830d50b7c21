package deploytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natsx/natstest"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// startIngress runs the ingress binary on a database and a NATS server of its own and returns
// its process and address, ready.
func startIngress(t *testing.T) (*proc, string) {
	t.Helper()
	bin := buildServices(t, "ingress")["ingress"]
	ns := natstest.Start(t)
	addr := freeAddr(t)
	p := start(t, "ingress", bin, map[string]string{
		"DATABASE_URL":                   storetest.NewURL(t),
		"NATS_URL":                       "nats://" + ns.Addr().String(),
		"HOOKLINE_HTTP_ADDR":             addr,
		"HOOKLINE_ADMIN_API_KEY":         testEnv["HOOKLINE_ADMIN_API_KEY"],
		"HOOKLINE_ENCRYPTION_KEY":        testEnv["HOOKLINE_ENCRYPTION_KEY"],
		"HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
	})
	p.ready(t, addr, 60*time.Second)
	return p, addr
}

// procValue reads one field of /proc/<pid>/status or /proc/<pid>/io, in bytes.
func procValue(t *testing.T, pid int, file, field string) int64 {
	t.Helper()
	n, err := readProc(pid, file, field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func readProc(pid int, file, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(value)
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/%s: %q", pid, file, line)
		}
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		return n, nil
	}
	return 0, fmt.Errorf("/proc/%d/%s has no %s", pid, file, field)
}

// rawRequest writes head (request line and headers, without the blank line) to a new
// connection, then whatever body writes, in its own goroutine, while it reads the answer: a
// server may answer, and close, before the body ends. The writer's errors are the server
// closing; they end the body quietly.
func rawRequest(addr, head string, body func(w io.Writer) error) (status int, answer string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err.Error() // called from goroutines: the caller reports it
	}
	defer conn.Close()
	// Not a timing assertion: a bound so that a server which never answers fails the test
	// instead of hanging it.
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, head+"\r\n\r\n"); err != nil {
		return 0, err.Error()
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		_ = body(conn)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err.Error()
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	conn.Close() // ends the writer, if the server left the connection open
	<-written
	return resp.StatusCode, string(raw)
}

// trickle writes exactly n bytes of filler in steps of step bytes, pausing between them.
func trickle(n, step int, pause time.Duration) func(io.Writer) error {
	return func(w io.Writer) error {
		chunk := bytes.Repeat([]byte("x"), step)
		for sent := 0; sent < n; sent += step {
			if _, err := w.Write(chunk[:min(step, n-sent)]); err != nil {
				return err
			}
			time.Sleep(pause)
		}
		return nil
	}
}

// chunked writes n bytes as chunks of step bytes (no Content-Length), or forever if n < 0.
func chunked(n int, step int) func(io.Writer) error {
	return func(w io.Writer) error {
		chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", step, bytes.Repeat([]byte("x"), step)))
		for sent := 0; n < 0 || sent < n; sent += step {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		_, err := io.WriteString(w, "0\r\n\r\n")
		return err
	}
}

// Issue 10, hostile tenants: memory before authentication. 100 connections without a key
// each declare a 33 MB body (80 to POST /event_type, 20 to the upload route) and send it
// slowly; the ingress, a process of its own, stays under 256 MiB of RSS throughout, and
// answers each 401 from its headers, having read next to nothing of the body.
func TestIngressMemoryUnderHostileBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the ingress binary")
	}
	p, addr := startIngress(t)
	pid := p.cmd.Process.Pid
	base := procValue(t, pid, "status", "VmRSS")

	var peak int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, err := readProc(pid, "status", "VmRSS"); err == nil && rss > peak {
				peak = rss
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const conns, declared = 100, 33_000_000
	var wg sync.WaitGroup
	for i := range conns {
		path := "/event_type"
		if i%5 == 0 {
			path = "/upload_file/webhook_id/00000000-0000-4000-8000-000000000000"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			head := "POST " + path + " HTTP/1.1\r\nHost: ingress\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(declared)
			// 8 MiB each, 16 KiB every 10 ms: a server that buffers what it is sent holds
			// 800 MiB by the end.
			got, answer := rawRequest(addr, head, trickle(8<<20, 16<<10, 10*time.Millisecond))
			if got != 401 || !strings.Contains(answer, `"error":true`) {
				t.Errorf("POST %s declaring %d bytes = %d %s, want 401 with the error envelope", path, declared, got, answer)
			}
		}()
	}
	wg.Wait()
	close(done)
	<-sampled
	t.Logf("ingress RSS: %d MiB before, %d MiB at most with %d hostile connections", base>>20, peak>>20, conns)
	if peak >= 256<<20 {
		t.Errorf("ingress RSS reached %d MiB with %d connections declaring %d bytes, want < 256 MiB", peak>>20, conns, declared)
	}
}

// Scenario 20 of reliability-scenarios.md against the ingress process, with the admin key: a
// 100 MiB body with its Content-Length is refused from the header, a chunked one without it
// once the limit is passed; the bytes the process read from all its sockets (rchar of
// /proc/<pid>/io) stay under the limit plus 64 KiB. A multipart body of 50,000 tiny parts is
// a 400. An upload of the allowed size still works.
func TestIngressOversizeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the ingress binary")
	}
	p, addr := startIngress(t)
	pid := p.cmd.Process.Pid
	auth := "\r\nAuthorization: Bearer " + testEnv["HOOKLINE_ADMIN_API_KEY"]
	rv := freeAddr(t) // never called: the uploads below fail or nobody delivers them
	hook := registerWebhook(t, "http://"+addr, "http://"+rv+"/hook")
	upload := "/upload_file/webhook_id/" + hook
	const uploadLimit = 32<<20 + 1<<20 // HOOKLINE_MAX_UPLOAD_BYTES + multipart framing

	for _, c := range []struct {
		name, path, headers string
		body                func(io.Writer) error
		status              int
		readAtMost          int64
	}{
		{"100 MiB with Content-Length", "/event_type", "Content-Type: application/json\r\nContent-Length: 104857600",
			trickle(100<<20, 64<<10, 0), 413, 64 << 10},
		{"100 MiB upload with Content-Length", upload, "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 104857600",
			trickle(100<<20, 64<<10, 0), 413, 64 << 10},
		{"chunked without Content-Length", "/events", "Content-Type: application/json\r\nTransfer-Encoding: chunked",
			chunked(-1, 16<<10), 413, 1<<20 + 64<<10},
		{"chunked upload without Content-Length", upload, "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked",
			func(w io.Writer) error {
				part := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
				if _, err := fmt.Fprintf(w, "%x\r\n%s\r\n", len(part), part); err != nil {
					return err
				}
				return chunked(-1, 16<<10)(w)
			}, 413, uploadLimit + 64<<10},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := procValue(t, pid, "io", "rchar")
			status, answer := rawRequest(addr, "POST "+c.path+" HTTP/1.1\r\nHost: ingress"+auth+"\r\n"+c.headers, c.body)
			read := procValue(t, pid, "io", "rchar") - before
			t.Logf("answered %d having read %d bytes from all its sockets", status, read)
			if status != c.status || !strings.Contains(answer, `"error":true`) {
				t.Errorf("status %d %s, want %d with the error envelope", status, answer, c.status)
			}
			if read > c.readAtMost {
				t.Errorf("the ingress read %d bytes, want at most %d", read, c.readAtMost)
			}
		})
	}

	t.Run("50,000 tiny parts", func(t *testing.T) {
		var form bytes.Buffer
		for i := range 50_000 {
			fmt.Fprintf(&form, "--b\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nx\r\n", i)
		}
		form.WriteString("--b--\r\n")
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: ingress%s\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d", upload, auth, form.Len())
		status, answer := rawRequest(addr, head, func(w io.Writer) error { _, err := w.Write(form.Bytes()); return err })
		if status != 400 && status != 413 || !strings.Contains(answer, `"error":true`) {
			t.Errorf("status %d %s, want 400 or 413 with the error envelope", status, answer)
		}
	})

	t.Run("upload of the allowed size", func(t *testing.T) {
		file := bytes.Repeat([]byte("0123456789abcdef"), (32<<20)/16)
		var form bytes.Buffer
		fmt.Fprintf(&form, "--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n")
		fmt.Fprintf(&form, "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n")
		form.Write(file)
		form.WriteString("\r\n--b--\r\n")
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+upload, &form)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=b")
		var out struct {
			Size        int64  `json:"size"`
			ContentType string `json:"content_type"`
			SHA256      string `json:"sha256"`
		}
		apiCall(t, req, &out)
		if out.Size != int64(len(file)) || out.ContentType != "text/plain; charset=utf-8" || len(out.SHA256) != 64 {
			raw, _ := json.Marshal(out)
			t.Errorf("upload answered %s, want size %d, the sniffed type and a hash", raw, len(file))
		}
	})
}

// Scenario 20 (d), smaller: uploads on a slow link finish, even when they take longer than
// the API's per-request deadline (15 s): 4 at once, each 2 MiB sent at about 100 KiB/s, all
// answered 200 with their size. The server's ReadTimeout (60 s) is what bounds a slow body.
func TestIngressSlowUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the ingress binary; takes about 20 s")
	}
	_, addr := startIngress(t)
	rv := freeAddr(t)
	upload := "/upload_file/webhook_id/" + registerWebhook(t, "http://"+addr, "http://"+rv+"/hook")
	const size = 2 << 20
	part := "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\r\n"
	end := "\r\n--b--\r\n"
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: ingress\r\nAuthorization: Bearer %s\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d",
		upload, testEnv["HOOKLINE_ADMIN_API_KEY"], len(part)+size+len(end))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, answer := rawRequest(addr, head, func(w io.Writer) error {
				if _, err := io.WriteString(w, part); err != nil {
					return err
				}
				if err := trickle(size, 10<<10, 100*time.Millisecond)(w); err != nil {
					return err
				}
				_, err := io.WriteString(w, end)
				return err
			})
			if status != 200 || !strings.Contains(answer, fmt.Sprintf(`"size":%d`, size)) {
				t.Errorf("slow upload = %d %s, want 200 with size %d", status, answer, size)
			}
		}()
	}
	wg.Wait()
}
