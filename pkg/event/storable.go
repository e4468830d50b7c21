package event

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"unicode/utf8"
)

// checkStorable finds what in the JSON text raw PostgreSQL's jsonb cannot store: text that is
// not valid UTF-8, a NUL (\u0000), or a UTF-16 surrogate escape without its pair. It returns
// a *FieldError naming the path of the first such string ("data.a.b", "data.list[2]"), with
// field as the root, or nil. Such an event could never be written: refused here, it gets a
// clear 422 (POST /events) or a rejection (NATS) instead of wedging a batch.
func checkStorable(field string, raw []byte) error {
	if utf8.Valid(raw) && !bytes.Contains(raw, []byte(`\u`)) {
		return nil // the common case: nothing to look at
	}
	type frame struct {
		object    bool
		expectKey bool
		key       string
		index     int
	}
	var stack []frame
	path := func() string {
		p := field
		for _, f := range stack {
			if f.object {
				p += pathKey(f.key)
			} else {
				p += "[" + strconv.Itoa(f.index) + "]"
			}
		}
		return p
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var prev int64
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return &FieldError{Field: field, Problem: "is not valid JSON: " + err.Error()}
		}
		seg := raw[prev:dec.InputOffset()]
		prev = dec.InputOffset()
		top := len(stack) - 1
		isKey := top >= 0 && stack[top].object && stack[top].expectKey
		if s, ok := tok.(string); ok {
			if isKey {
				stack[top].key, stack[top].expectKey = s, false
			}
			if problem := badString(seg); problem != "" {
				where := path()
				if isKey {
					where += " (a key)"
				}
				return &FieldError{Field: where, Problem: problem}
			}
			if isKey {
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{object: true, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			top--
		}
		// A value ended: the enclosing container moves to its next key or index.
		if top >= 0 {
			if stack[top].object {
				stack[top].expectKey = true
			} else {
				stack[top].index++
			}
		}
	}
}

// badString checks the JSON string literal in seg (which may start with separators).
func badString(seg []byte) string {
	i := bytes.IndexByte(seg, '"')
	if i < 0 {
		return ""
	}
	s := seg[i+1:]
	if !utf8.Valid(s) {
		return "must be valid UTF-8"
	}
	for j := 0; j < len(s); j++ {
		if s[j] != '\\' {
			continue
		}
		j++
		if j >= len(s) || s[j] != 'u' {
			continue
		}
		code, ok := hex4(s[j+1:])
		if !ok {
			continue
		}
		j += 4
		switch {
		case code == 0:
			return `must not contain the NUL character (\u0000): it cannot be stored`
		case code >= 0xDC00 && code <= 0xDFFF:
			return "holds a UTF-16 low surrogate escape without its high surrogate: it cannot be stored"
		case code >= 0xD800 && code <= 0xDBFF:
			if j+6 < len(s) && s[j+1] == '\\' && s[j+2] == 'u' {
				if low, ok := hex4(s[j+3:]); ok && low >= 0xDC00 && low <= 0xDFFF {
					j += 6
					continue
				}
			}
			return "holds a UTF-16 high surrogate escape without its low surrogate: it cannot be stored"
		}
	}
	return ""
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n), err == nil
}

// pathKey writes an object key into a path: .key when it is plain, else ["quoted"].
func pathKey(k string) string {
	for _, c := range k {
		if c < '!' || c > '~' || c == '.' || c == '[' || c == '"' {
			return "[" + strconv.QuoteToASCII(k) + "]"
		}
	}
	return "." + k
}
