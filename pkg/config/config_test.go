package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil), ":8082")
	if err != nil {
		t.Fatalf("Load(empty) = %v", err)
	}
	want := Default(":8082")
	if diff := cmp.Diff(want, c); diff != "" {
		t.Fatalf("Load(empty) differs from Default (-want +got):\n%s", diff)
	}
	if c.HTTPAddr != ":8082" || c.NATSListen != "127.0.0.1:4223" || c.NATSMonitor != "127.0.0.1:8223" ||
		c.EndpointConcurrency != 32 || c.ReceiverTimeout != 15*time.Second || c.MaxUploadBytes != 32<<20 ||
		c.DisableAfter != 120*time.Hour || c.AllowPrivateTargets || c.RetrySchedule.String() != "0s,5s,5m0s,30m0s,2h0m0s,5h0m0s,10h0m0s,10h0m0s" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestLoadSetValues(t *testing.T) {
	c, err := Load(env(map[string]string{
		"HOOKLINE_RETRY_SCHEDULE": "0s, 100ms,1s", "HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
		"HOOKLINE_NATS_SYNC": "always", "HOOKLINE_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"HOOKLINE_NATS_LISTEN": "127.0.0.1:0", "HOOKLINE_RATE_LIMIT": "50",
	}), ":8081")
	if err != nil {
		t.Fatal(err)
	}
	if c.RetrySchedule.Attempts() != 3 || !c.AllowPrivateTargets || !c.NATSSyncAlways || len(c.EncryptionKey) != 32 || c.RateLimit != 50 {
		t.Fatalf("Load = %+v", c)
	}
}

// Every bad variable stops start-up with one line that names it; secrets are never echoed.
func TestLoadBadValues(t *testing.T) {
	bad := map[string]string{
		"HOOKLINE_RETRY_SCHEDULE":        "soon",
		"HOOKLINE_HTTP_ADDR":             "8081",
		"HOOKLINE_ENDPOINT_CONCURRENCY":  "0",
		"HOOKLINE_RECEIVER_TIMEOUT":      "-1s",
		"HOOKLINE_ALLOW_PRIVATE_TARGETS": "maybe",
		"HOOKLINE_NATS_SYNC":             "sometimes",
		"HOOKLINE_BLOB_STORE":            "s3",
		"HOOKLINE_MAX_UPLOAD_BYTES":      "lots",
		"HOOKLINE_ADMIN_API_KEY":         "short-secret",
		"HOOKLINE_ENCRYPTION_KEY":        "c2VjcmV0",
		"DATABASE_URL":                   "mysql://root:hunter2@db/x",
		"HOOKLINE_PUBLIC_URL":            "ftp://x",
	}
	_, err := Load(env(bad), ":8081")
	if err == nil {
		t.Fatal("Load(bad) = nil error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(bad) {
		t.Fatalf("%d error lines for %d bad variables:\n%s", len(lines), len(bad), err)
	}
	for name := range bad {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, name+"=") || strings.HasPrefix(l, name+":") {
				found = true
			}
		}
		if !found {
			t.Errorf("no line names %s:\n%s", name, err)
		}
	}
	if want := `HOOKLINE_RETRY_SCHEDULE="soon": time: invalid duration "soon"`; !strings.Contains(err.Error(), want) {
		t.Errorf("error lacks %q:\n%s", want, err)
	}
	for _, secret := range []string{"short-secret", "c2VjcmV0", "hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes a secret %q:\n%s", secret, err)
		}
	}
}
