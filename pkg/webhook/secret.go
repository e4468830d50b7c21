package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
)

// secretPrefix starts every secret, as in Standard Webhooks (and svix).
const secretPrefix = "whsec_"

// Key lengths accepted by Secret.Key: Standard Webhooks asks for keys
// between 24 and 64 bytes; NewSecret makes 32.
const (
	minKeyLen = 24
	maxKeyLen = 64
	newKeyLen = 32
)

// Secret is a webhook signing secret: "whsec_" followed by the standard
// base64 encoding of the key. It is shown to the user once, at registration.
//
// Never log it: its LogValue hides it from slog, but fmt prints it as is.
type Secret string

// NewSecret returns a new secret holding 32 bytes from crypto/rand.
// The error is crypto/rand's, which current Go never returns.
func NewSecret() (Secret, error) {
	var key [newKeyLen]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("new webhook secret: %w", err)
	}
	return Secret(secretPrefix + base64.StdEncoding.EncodeToString(key[:])), nil
}

// Key returns the HMAC key: the base64-decoded part after "whsec_".
// It returns an error (never containing the secret) when the prefix is
// missing, the rest is not standard base64, or the key is not 24–64 bytes.
func (s Secret) Key() ([]byte, error) {
	enc, ok := strings.CutPrefix(string(s), secretPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook secret does not start with %q", secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		// err quotes the offending byte offset only, not the secret.
		return nil, fmt.Errorf("webhook secret is not base64 after %q: %w", secretPrefix, err)
	}
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, fmt.Errorf("webhook secret key is %d bytes, want %d to %d", len(key), minKeyLen, maxKeyLen)
	}
	return key, nil
}

// LogValue keeps the secret out of structured logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(secretPrefix + "[redacted]") }
