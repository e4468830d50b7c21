package httpapi

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/webhook"
)

// FuzzRegistration: any JSON object either parses into a registration that passes every
// check again, or yields a field error (a 422 naming the field); never a panic, never another
// error. Unknown keys are refused with a field error too.
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
		err := fl.only(webhookFields)
		var r webhookBody
		if err == nil {
			r, err = parseWebhook(fl, true)
		}
		if err != nil {
			var fe *event.FieldError
			_, emptyKey := fl[""] // an unknown key "" is named as it is
			if !errors.As(err, &fe) || fe.Field == "" && !emptyKey || fe.Problem == "" {
				t.Fatalf("error %T %v: want a field error naming a field and a problem", err, err)
			}
			if status, _, _, _ := answerFor(err, "POST", "/webhook/register"); status != 422 {
				t.Fatalf("field error %v answers %d, want 422", err, status)
			}
			return
		}
		if r.UserID <= 0 || len(r.EventTypeIDs) == 0 {
			t.Fatalf("accepted %+v without a user or event type", r)
		}
		if r.URL == nil {
			t.Fatal("accepted a registration without a url")
		}
		if _, err := webhook.ValidateURL(*r.URL); err != nil {
			t.Fatalf("accepted url %q that fails validation: %v", *r.URL, err)
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
