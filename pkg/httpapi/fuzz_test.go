package httpapi

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hookline/hookline/pkg/webhook"
)

// FuzzRegistration: any JSON object either parses into a registration that passes every
// check again, or yields a 422 naming a field; never a panic, never another status.
func FuzzRegistration(f *testing.F) {
	f.Add(`{"event_type_id":"2f2e1d3c-1b4a-4c5d-8e6f-7a8b9c0d1e2f","user_id":1,"url":"https://example.com/h"}`)
	f.Add(`{"event_type_ids":["2f2e1d3c-1b4a-4c5d-8e6f-7a8b9c0d1e2f"],"user_id":9007199254740993,"url":"http://a/","custom_headers":{"X-A":"b"},"custom_payload":{"k":[1,{"x":null}]}}`)
	f.Add(`{"event_type_id":"x","user_id":"1","url":5}`)
	f.Add(`{"event_type_id":"2f2e1d3c-1b4a-4c5d-8e6f-7a8b9c0d1e2f","user_id":1e3,"url":"https://example.com","custom_headers":{"Host":"x"}}`)
	f.Add(`{"event_type_id":"2f2e1d3c-1b4a-4c5d-8e6f-7a8b9c0d1e2f","user_id":1,"url":"https://example.com","custom_payload":{"type":1}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var fl fields
		if err := json.Unmarshal([]byte(body), &fl); err != nil || fl == nil {
			return // not an object: jsonObject answers 400 before parsing
		}
		r, err := parseRegistration(fl)
		if err != nil {
			var e *Error
			var fp fieldProblem
			switch {
			case errors.As(err, &e):
				if e.Status != 422 || e.Field == "" || e.Problem == "" {
					t.Fatalf("error %+v: want a 422 naming a field", e)
				}
			case errors.As(err, &fp):
				if f, p := fp.FieldProblem(); f == "" || p == "" {
					t.Fatalf("field error without field or problem: %v", err)
				}
			default:
				t.Fatalf("error %T %v: not a field error", err, err)
			}
			return
		}
		if r.UserID <= 0 || len(r.EventTypeIDs) == 0 {
			t.Fatalf("accepted %+v without a user or event type", r)
		}
		if _, err := webhook.ValidateURL(r.URL); err != nil {
			t.Fatalf("accepted url %q that fails validation: %v", r.URL, err)
		}
		if err := webhook.ValidateHeaders(r.CustomHeaders); err != nil {
			t.Fatalf("accepted headers that fail validation: %v", err)
		}
		if r.CustomPayload != nil {
			if err := webhook.ValidatePayload(r.CustomPayload); err != nil {
				t.Fatalf("accepted payload that fails validation: %v", err)
			}
		}
	})
}
