package webhook

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSealer(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	x, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := x.Seal(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored, string(s)) || !strings.HasPrefix(stored, "enc:v1:") {
		t.Fatalf("Seal = %q: the secret shows or the prefix is missing", stored)
	}
	if got, err := x.Open(stored); err != nil || got != s {
		t.Fatalf("Open(Seal(s)) = %q, %v; want the secret", got, err)
	}
	other, _ := NewSealer(bytes.Repeat([]byte{8}, 32))
	if _, err := other.Open(stored); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open with another key = %v, want ErrSealed", err)
	}
	var none *Sealer
	if _, err := none.Open(stored); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open without a key = %v, want ErrSealed", err)
	}
	if got, err := x.Open(string(s)); err != nil || got != s {
		t.Fatalf("Open(clear) = %q, %v; want the secret as stored", got, err)
	}
	tampered := stored[:len(stored)-4] + "AAAA"
	if _, err := x.Open(tampered); !errors.Is(err, ErrSealed) {
		t.Fatalf("Open(tampered) = %v, want ErrSealed", err)
	}
	if _, err := NewSealer(key[:16]); err == nil {
		t.Fatal("NewSealer(16 bytes) = nil error, want one")
	}
}
