package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// RenderBody returns the body POSTed to a receiver:
//
//	{"type":"upload.completed","timestamp":"2026-11-28T12:00:00Z","data":{...},<custom keys>}
//
// type, timestamp (RFC3339, UTC, whole seconds) and data (the bytes given,
// less surrounding space) come first, then the custom payload's keys in
// sorted order, so the same input always gives the same bytes. The seed
// sent the custom payload as the whole body; merging it at the top level
// keeps existing receivers working.
//
// It returns a *FieldError for field "data" when data is not a JSON
// object, or for field "custom_payload" when custom uses a reserved key or
// cannot be encoded. It does not enforce ValidatePayload's size and depth
// limits: registration does.
func RenderBody(eventType string, ts time.Time, data json.RawMessage, custom map[string]any) ([]byte, error) {
	data = bytes.TrimSpace(data)
	// json.Valid costs a scan, but a body that is not JSON would fail at
	// every attempt and every receiver; better to fail here, once.
	if len(data) == 0 || data[0] != '{' || !json.Valid(data) {
		return nil, &FieldError{Field: "data", Problem: "must be a JSON object"}
	}
	var customJSON []byte
	if len(custom) > 0 {
		for _, k := range reservedKeys {
			if _, ok := custom[k]; ok {
				return nil, payloadError(fmt.Sprintf("key %q is reserved: type, timestamp and data are set by Hookline", k))
			}
		}
		// One Marshal of the whole map: encoding/json sorts map keys, and
		// the result is `{"k":v,...}`, spliced in below without its braces.
		var err error
		if customJSON, err = json.Marshal(custom); err != nil {
			return nil, payloadError("must be a JSON object")
		}
	}

	b := make([]byte, 0, len(`{"type":,"timestamp":"2006-01-02T15:04:05Z","data":}`)+len(eventType)+2+len(data)+len(customJSON))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, eventType)
	b = append(b, `,"timestamp":"`...)
	b = ts.UTC().AppendFormat(b, time.RFC3339) // drops fractions
	b = append(b, `","data":`...)
	b = append(b, data...)
	if len(customJSON) > 2 { // more than "{}"
		b = append(b, ',')
		b = append(b, customJSON[1:len(customJSON)-1]...)
	}
	b = append(b, '}')
	return b, nil
}

// appendJSONString appends s as a JSON string. Event type names are plain
// ASCII and are copied as they are; anything else goes through
// encoding/json, which escapes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
