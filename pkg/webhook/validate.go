package webhook

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
)

// Registration limits (DESIGN.md §6, §10).
const (
	MaxURLLen         = 2048
	MaxHeaders        = 32
	MaxHeaderNameLen  = 256
	MaxHeaderValueLen = 1024
	MaxPayloadBytes   = 16 << 10
	MaxPayloadDepth   = 32
)

// ValidateURL checks a webhook URL: http or https, a host, no user info
// (credentials in URLs end up in logs), at most 2,048 bytes. It returns the
// URL with surrounding spaces trimmed, or a *FieldError for field "url".
//
// It does not resolve the host: private and loopback targets are refused
// at dial time by package egress, after DNS, so rebinding cannot dodge it.
func ValidateURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	switch {
	case raw == "":
		return "", urlError("is required")
	case len(raw) > MaxURLLen:
		return "", urlError(fmt.Sprintf("must be at most %d characters, got %d", MaxURLLen, len(raw)))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", urlError("is not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https": // url.Parse lower-cases it
		return "", urlError("must be an http or https URL")
	case u.User != nil:
		return "", urlError("must not contain a user name or password")
	case u.Opaque != "" || u.Hostname() == "":
		return "", urlError("must have a host, as in https://example.com/hook")
	}
	return raw, nil
}

func urlError(problem string) error { return &FieldError{Field: "url", Problem: problem} }

// refusedHeaders are names a registration may not set (lower case): they
// belong to the transport or to Hookline, and a custom value would break
// framing, routing or signature checks. Names starting with "webhook-" are
// refused too.
var refusedHeaders = map[string]bool{
	"host":                true,
	"content-length":      true,
	"transfer-encoding":   true,
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"proxy-authenticate":  true,
	"proxy-authorization": true,
	"te":                  true,
	"trailer":             true,
	"upgrade":             true,
}

// ValidateHeaders checks a webhook's custom headers: at most 32; names are
// HTTP tokens (RFC 7230) of at most 256 bytes, unique regardless of case,
// neither "webhook-*" nor a transport header (Host, Content-Length,
// Transfer-Encoding, Connection and the other hop-by-hop headers); values
// are at most 1 KiB and contain no CR, LF, NUL or other control character
// but tab (net/http would refuse to send them). Content-Type is allowed
// when its media type is application/json (any case, with parameters such
// as charset=utf-8), as the seed's own example sets it; it is then sent as
// given. Any other Content-Type would misdescribe the JSON body.
//
// It returns a *FieldError for field "custom_headers" whose problem names
// the header; with several bad headers, the first in sorted order. A nil
// map is valid.
func ValidateHeaders(h map[string]string) error {
	if len(h) > MaxHeaders {
		return headerError(fmt.Sprintf("at most %d headers are allowed, got %d", MaxHeaders, len(h)))
	}
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names) // the same input always reports the same problem
	seen := make(map[string]string, len(h))
	for _, name := range names {
		if err := checkHeaderName(name); err != nil {
			return err
		}
		lower := strings.ToLower(name)
		if first, dup := seen[lower]; dup {
			return headerError(fmt.Sprintf("header %q repeats %q (names are case-insensitive)", name, first))
		}
		seen[lower] = name
		if strings.HasPrefix(lower, "webhook-") {
			return headerError(fmt.Sprintf("header %q is not allowed: webhook-* headers are set by Hookline", name))
		}
		if refusedHeaders[lower] {
			return headerError(fmt.Sprintf("header %q is not allowed: it is set by the HTTP client", name))
		}
		if err := checkHeaderValue(name, h[name]); err != nil {
			return err
		}
		if lower == "content-type" && !IsJSONMediaType(h[name]) {
			return headerError(fmt.Sprintf("header %q must be application/json (optionally with parameters such as charset=utf-8): the body is JSON", name))
		}
	}
	return nil
}

// IsJSONMediaType reports whether a Content-Type value's media type is
// application/json, whatever its case and parameters.
func IsJSONMediaType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	return err == nil && mt == "application/json" // ParseMediaType lower-cases it
}

func checkHeaderName(name string) error {
	switch {
	case name == "":
		return headerError("header names must not be empty")
	case len(name) > MaxHeaderNameLen:
		return headerError(fmt.Sprintf("header name %.32q… is longer than %d characters", name, MaxHeaderNameLen))
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return headerError(fmt.Sprintf("header name %q may only contain letters, digits and !#$%%&'*+-.^_`|~", name))
		}
	}
	return nil
}

func checkHeaderValue(name, value string) error {
	if len(value) > MaxHeaderValueLen {
		return headerError(fmt.Sprintf("header %q: value must be at most %d bytes, got %d", name, MaxHeaderValueLen, len(value)))
	}
	for i := 0; i < len(value); i++ {
		// CR and LF would let a value start a new header (header injection).
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return headerError(fmt.Sprintf("header %q: value must not contain CR, LF, NUL or other control characters", name))
		}
	}
	return nil
}

// isTokenChar reports whether c may appear in an RFC 7230 token.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func headerError(problem string) error { return &FieldError{Field: "custom_headers", Problem: problem} }

// reservedKeys are the top-level body keys RenderBody writes itself.
var reservedKeys = [...]string{"type", "timestamp", "data"}

// ValidatePayload checks a webhook's custom payload, whose keys are merged
// into every body: it must not use the reserved keys "type", "timestamp" or
// "data", must encode to at most 16 KiB of JSON, and must nest at most 32
// levels (the payload object itself is level 1).
//
// It returns a *FieldError for field "custom_payload". A nil map is valid.
func ValidatePayload(p map[string]any) error {
	for _, k := range reservedKeys {
		if _, ok := p[k]; ok {
			return payloadError(fmt.Sprintf("key %q is reserved: type, timestamp and data are set by Hookline", k))
		}
	}
	if p == nil {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return payloadError("must be a JSON object")
	}
	if len(b) > MaxPayloadBytes {
		return payloadError(fmt.Sprintf("must be at most %d bytes as JSON, got %d", MaxPayloadBytes, len(b)))
	}
	if d := jsonDepth(b); d > MaxPayloadDepth {
		return payloadError(fmt.Sprintf("must nest at most %d levels deep, got %d", MaxPayloadDepth, d))
	}
	return nil
}

func payloadError(problem string) error {
	return &FieldError{Field: "custom_payload", Problem: problem}
}

// jsonDepth returns the deepest nesting of objects and arrays in valid
// JSON. Scanning the encoding measures exactly what receivers parse,
// whatever Go types the map holds.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++ // skip the escaped byte, which may be a quote
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}
