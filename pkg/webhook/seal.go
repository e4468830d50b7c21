package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts signing secrets for storage (AES-256-GCM). A nil *Sealer stores secrets in
// clear, for a deployment without HOOKLINE_ENCRYPTION_KEY; Open reads both forms, so a key can
// be introduced later.
type Sealer struct{ aead cipher.AEAD }

const sealedPrefix = "enc:v1:"

// NewSealer takes a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns the stored form of s.
func (x *Sealer) Seal(s Secret) (string, error) {
	if x == nil {
		return string(s), nil
	}
	nonce := make([]byte, x.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := x.aead.Seal(nonce, nonce, []byte(s), []byte(sealedPrefix))
	return sealedPrefix + base64.StdEncoding.EncodeToString(out), nil
}

// ErrSealed reports a stored secret that cannot be opened: encrypted with another key, or
// encrypted while this process has no key.
var ErrSealed = errors.New("stored secret cannot be decrypted (wrong or missing HOOKLINE_ENCRYPTION_KEY)")

// Open returns the secret of a stored form made by Seal (or stored in clear).
func (x *Sealer) Open(stored string) (Secret, error) {
	rest, sealed := strings.CutPrefix(stored, sealedPrefix)
	if !sealed {
		return Secret(stored), nil
	}
	if x == nil {
		return "", ErrSealed
	}
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(raw) < x.aead.NonceSize() {
		return "", ErrSealed
	}
	n := x.aead.NonceSize()
	plain, err := x.aead.Open(nil, raw[:n], raw[n:], []byte(sealedPrefix))
	if err != nil {
		return "", ErrSealed
	}
	return Secret(plain), nil
}
