package webhook

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test vector of the Standard Webhooks specification.
const (
	specSecret    Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specID               = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specTimestamp        = 1614265330
	specBody             = `{"test": 2432232314}`
	specSignature        = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignSpecVector(t *testing.T) {
	got, err := Sign(specID, time.Unix(specTimestamp, 0), []byte(specBody), specSecret)
	if err != nil || got != specSignature {
		t.Fatalf("Sign(spec vector) = %q, %v, want %q, nil", got, err, specSignature)
	}
	now := time.Unix(specTimestamp+10, 0)
	if err := Verify(specSecret, specID, strconv.Itoa(specTimestamp), specSignature, []byte(specBody), now, 5*time.Minute); err != nil {
		t.Fatalf("Verify(spec vector) = %v, want nil", err)
	}
}

func mustSecret(t testing.TB) Secret {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSecret(t *testing.T) {
	s := mustSecret(t)
	if !strings.HasPrefix(string(s), "whsec_") {
		t.Fatalf("NewSecret() = %q, want whsec_ prefix", s)
	}
	key, err := s.Key()
	if err != nil || len(key) != 32 {
		t.Fatalf("NewSecret().Key() = %d bytes, %v, want 32 bytes, nil", len(key), err)
	}
	if s2 := mustSecret(t); s2 == s {
		t.Fatalf("NewSecret() returned %q twice", s)
	}
}

func TestSecretKeyErrors(t *testing.T) {
	for _, s := range []Secret{
		"",
		"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",       // no prefix
		"whsec_",                                 // empty key
		"whsec_not base64!",                      // not base64
		"whsec_" + Secret(b64(make([]byte, 16))), // too short
		"whsec_" + Secret(b64(make([]byte, 65))), // too long
	} {
		if key, err := s.Key(); err == nil {
			t.Errorf("Secret(%q).Key() = %x, nil, want an error", s, key)
		} else if len(s) > 12 && strings.Contains(err.Error(), string(s)[6:]) {
			t.Errorf("Secret(%q).Key() error %q reveals the secret", s, err)
		}
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestSignVerifyRoundTrip(t *testing.T) {
	secret := mustSecret(t)
	ts := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"upload.completed","data":{}}`)
	sig, err := Sign("msg_1", ts, body, secret)
	if err != nil {
		t.Fatal(err)
	}
	tsText := strconv.FormatInt(ts.Unix(), 10)
	tests := []struct {
		name string
		id   string
		ts   string
		sig  string
		body []byte
		now  time.Time
		want error
	}{
		{"ok", "msg_1", tsText, sig, body, ts, nil},
		{"ok 5 minutes later", "msg_1", tsText, sig, body, ts.Add(5 * time.Minute), nil},
		{"ok clock behind", "msg_1", tsText, sig, body, ts.Add(-5 * time.Minute), nil},
		{"other v1 first", "msg_1", tsText, "v1,AAAA " + sig, body, ts, nil},
		{"other version ignored", "msg_1", tsText, "v1a,xyz " + sig, body, ts, nil},
		{"tampered body", "msg_1", tsText, sig, []byte(`{"type":"upload.completed","data":{"x":1}}`), ts, ErrSignature},
		{"other id", "msg_2", tsText, sig, body, ts, ErrSignature},
		{"empty signature", "msg_1", tsText, "", body, ts, ErrSignature},
		{"without v1", "msg_1", tsText, sig[3:], body, ts, ErrSignature},
		{"old timestamp", "msg_1", tsText, sig, body, ts.Add(5*time.Minute + time.Second), ErrTimestamp},
		{"future timestamp", "msg_1", tsText, sig, body, ts.Add(-6 * time.Minute), ErrTimestamp},
		{"timestamp not a number", "msg_1", "soon", sig, body, ts, ErrTimestamp},
		{"other timestamp", "msg_1", strconv.FormatInt(ts.Unix()+1, 10), sig, body, ts, ErrSignature},
	}
	for _, tt := range tests {
		err := Verify(secret, tt.id, tt.ts, tt.sig, tt.body, tt.now, 5*time.Minute)
		if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
			t.Errorf("%s: Verify(%q, %q, %q) = %v, want %v", tt.name, tt.id, tt.ts, tt.sig, err, tt.want)
		}
	}
}

func TestSignRotation(t *testing.T) {
	oldSecret, newSecret := mustSecret(t), mustSecret(t)
	ts := time.Unix(1_800_000_000, 0)
	body := []byte(`{"a":1}`)
	sig, err := Sign("msg_1", ts, body, newSecret, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(sig, " ")
	if len(parts) != 2 {
		t.Fatalf("Sign(two secrets) = %q, want two space-separated signatures", sig)
	}
	for _, s := range []Secret{oldSecret, newSecret} {
		if err := Verify(s, "msg_1", strconv.FormatInt(ts.Unix(), 10), sig, body, ts, time.Minute); err != nil {
			t.Errorf("Verify(one of the rotated secrets) = %v, want nil", err)
		}
	}
	if err := Verify(mustSecret(t), "msg_1", strconv.FormatInt(ts.Unix(), 10), sig, body, ts, time.Minute); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify(a third secret) = %v, want ErrSignature", err)
	}
	one, _ := Sign("msg_1", ts, body, newSecret)
	if parts[0] != one {
		t.Errorf("Sign(new, old) first signature = %q, want Sign(new) = %q", parts[0], one)
	}
}

func TestSignErrors(t *testing.T) {
	if got, err := Sign("id", time.Now(), nil); err == nil {
		t.Errorf("Sign(no secrets) = %q, nil, want an error", got)
	}
	if got, err := Sign("id", time.Now(), nil, mustSecret(t), "whsec_bad"); err == nil {
		t.Errorf("Sign(bad second secret) = %q, nil, want an error", got)
	}
	if err := Verify("whsec_bad", "id", "1", "v1,x", nil, time.Unix(1, 0), time.Minute); err == nil || errors.Is(err, ErrSignature) {
		t.Errorf("Verify(bad secret) = %v, want a key error", err)
	}
}

func TestSignerConcurrent(t *testing.T) {
	s, err := NewSigner(specSecret)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				if got := s.Sign(specID, time.Unix(specTimestamp, 0), []byte(specBody)); got != specSignature {
					t.Errorf("Signer.Sign(spec vector) = %q, want %q", got, specSignature)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func FuzzSignVerify(f *testing.F) {
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", []byte(specBody), []byte("0123456789abcdef01234567"), int64(specTimestamp))
	f.Add("", []byte{}, bytes.Repeat([]byte{0xff}, 32), int64(0))
	f.Add("id with spaces.and.dots", []byte("\x00\n"), []byte("short"), int64(-1))
	f.Fuzz(func(t *testing.T, id string, body, key []byte, unix int64) {
		secret := Secret("whsec_" + b64(key))
		ts := time.Unix(unix, 0)
		sig, err := Sign(id, ts, body, secret)
		if len(key) < minKeyLen || len(key) > maxKeyLen {
			if err == nil {
				t.Fatalf("Sign(%d-byte key) = %q, nil, want an error", len(key), sig)
			}
			return
		}
		if err != nil {
			t.Fatalf("Sign(%d-byte key) = %v", len(key), err)
		}
		if err := Verify(secret, id, strconv.FormatInt(unix, 10), sig, body, ts, time.Minute); err != nil {
			t.Fatalf("Verify(Sign(%q, %d, %q)) = %v, want nil", id, unix, body, err)
		}
		tampered := append([]byte{'x'}, body...)
		if err := Verify(secret, id, strconv.FormatInt(unix, 10), sig, tampered, ts, time.Minute); !errors.Is(err, ErrSignature) {
			t.Fatalf("Verify(tampered body) = %v, want ErrSignature", err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	s, err := NewSigner(mustSecret(b))
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("a"), 1024)
	ts := time.Unix(1_800_000_000, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s.Sign("msg_2fWq9LrXkq3s0j4Yb7tZ1cN8pQe", ts, body)
	}
}

func BenchmarkSignFunc(b *testing.B) {
	secret := mustSecret(b)
	body := bytes.Repeat([]byte("a"), 1024)
	ts := time.Unix(1_800_000_000, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign("msg_2fWq9LrXkq3s0j4Yb7tZ1cN8pQe", ts, body, secret); err != nil {
			b.Fatal(err)
		}
	}
}
