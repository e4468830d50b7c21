package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sigVersion prefixes each signature in the webhook-signature header:
// "v1" is Standard Webhooks' symmetric HMAC-SHA256 scheme.
const sigVersion = "v1,"

// sigLen is the length of one "v1,<base64 of 32 bytes>" signature.
var sigLen = len(sigVersion) + base64.StdEncoding.EncodedLen(sha256.Size)

// Sign returns the value of the Standard Webhooks webhook-signature header
// for a message: for each secret, "v1," and the base64 HMAC-SHA256 of
// id + "." + unix seconds of ts + "." + body, space-separated. Several
// secrets are for rotation: a receiver accepts any one of them.
//
// It returns an error when no secret is given or one is malformed (see
// Secret.Key). The dispatcher should keep a Signer instead, which decodes
// the secrets once.
func Sign(id string, ts time.Time, body []byte, secrets ...Secret) (string, error) {
	if len(secrets) == 0 {
		return "", errors.New("sign webhook: no secret")
	}
	st := signState{macs: make([]hash.Hash, len(secrets))}
	for i, sec := range secrets {
		key, err := sec.Key()
		if err != nil {
			return "", fmt.Errorf("sign webhook: secret %d: %w", i+1, err)
		}
		st.macs[i] = hmac.New(sha256.New, key)
	}
	return st.sign(id, ts, body), nil
}

// Signer signs with keys decoded once. It is safe for concurrent use and
// must not be copied after first use.
type Signer struct {
	keys [][]byte
	// pool holds per-goroutine HMAC states: crypto/hmac makes Reset cheap
	// after first use, while hmac.New allocates and hashes the key pads.
	pool sync.Pool
}

// signState is one goroutine's scratch space for Signer.Sign.
type signState struct {
	macs   []hash.Hash
	prefix []byte // id + "." + timestamp + "."
	sum    []byte
}

// NewSigner decodes secrets for Sign. It returns an error when none is
// given or one is malformed (see Secret.Key); the error names the position
// of the bad secret, never its value.
func NewSigner(secrets ...Secret) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("sign webhook: no secret")
	}
	s := &Signer{keys: make([][]byte, len(secrets))}
	for i, sec := range secrets {
		key, err := sec.Key()
		if err != nil {
			return nil, fmt.Errorf("sign webhook: secret %d: %w", i+1, err)
		}
		s.keys[i] = key
	}
	s.pool.New = func() any {
		st := &signState{
			macs:   make([]hash.Hash, len(s.keys)),
			prefix: make([]byte, 0, 64),
			sum:    make([]byte, 0, sha256.Size),
		}
		for i, key := range s.keys {
			st.macs[i] = hmac.New(sha256.New, key)
		}
		return st
	}
	return s, nil
}

// Sign returns the webhook-signature header value for one attempt: one
// "v1,<base64>" per secret, space-separated, in the order given to
// NewSigner. See the package-level Sign for what is signed.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	st := s.pool.Get().(*signState)
	defer s.pool.Put(st)
	return st.sign(id, ts, body)
}

// sign computes the header value with st's HMACs, reusing its buffers.
func (st *signState) sign(id string, ts time.Time, body []byte) string {
	st.prefix = append(st.prefix[:0], id...)
	st.prefix = append(st.prefix, '.')
	st.prefix = strconv.AppendInt(st.prefix, ts.Unix(), 10)
	st.prefix = append(st.prefix, '.')

	var b strings.Builder
	b.Grow(len(st.macs)*(sigLen+1) - 1)
	var enc [44]byte // base64 of a SHA-256 sum
	for i, mac := range st.macs {
		mac.Reset()
		mac.Write(st.prefix)
		mac.Write(body)
		st.sum = mac.Sum(st.sum[:0])
		base64.StdEncoding.Encode(enc[:], st.sum)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(sigVersion)
		b.Write(enc[:])
	}
	return b.String()
}

// Verify checks a message as a Standard Webhooks receiver does: the
// webhook-timestamp header (unix seconds) must be within tolerance of now,
// in either direction, and one of the space-separated v1 signatures in the
// webhook-signature header must match secret. Other signature versions are
// ignored.
//
// It returns an error wrapping ErrTimestamp for a malformed or out of
// tolerance timestamp, ErrSignature when nothing matches, or Secret.Key's
// error for a malformed secret.
func Verify(secret Secret, id, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not unix seconds: %w", timestamp, ErrTimestamp)
	}
	diff := now.Sub(time.Unix(sec, 0))
	if diff > tolerance || diff < -tolerance {
		return fmt.Errorf("webhook-timestamp %d is %s from now: %w", sec, diff.Round(time.Second), ErrTimestamp)
	}
	key, err := secret.Key()
	if err != nil {
		return err
	}
	// Sign the header's timestamp text as received, as the sender did.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	want := sigVersion + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for cand := range strings.FieldsSeq(signature) {
		if !strings.HasPrefix(cand, sigVersion) {
			continue
		}
		// Constant time, so response timing does not reveal a prefix match.
		if subtle.ConstantTimeCompare([]byte(cand), []byte(want)) == 1 {
			return nil
		}
	}
	return ErrSignature
}
