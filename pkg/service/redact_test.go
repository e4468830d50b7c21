package service

import "testing"

// The "started" log line names the NATS URLs without any credentials, one per cluster node.
func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:secret@nats:4222", "nats://***@nats:4222"},
		{"nats://u:s1@nats-1:4222,nats://u:s2@nats-2:4222,tls://u:s3@nats-3:4222",
			"nats://***@nats-1:4222,nats://***@nats-2:4222,tls://***@nats-3:4222"},
		{"u:p@a@host:4222", "nats://***@host:4222"},
	} {
		if got := redactURL(c.in); got != c.want {
			t.Errorf("redactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
