package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

var (
	now       = time.Date(2026, 11, 28, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	webhookID = uuid.MustParse("0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d")
)

const subject = "events.upload.completed"

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		msgID string
		body  string
		want  Event
	}{
		{
			name: "everything given",
			body: `{"id":"evt_1","type":"upload.completed","user_id":42,"webhook_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d",` +
				`"occurred_at":"2026-11-28T10:30:00.5+01:00","data":{"file_id":"f1"}}`,
			want: Event{ID: "evt_1", Type: "upload.completed", UserID: 42, WebhookID: &webhookID,
				OccurredAt: time.Date(2026, 11, 28, 9, 30, 0, 500_000_000, time.UTC), Data: json.RawMessage(`{"file_id":"f1"}`)},
		},
		{
			name:  "defaults: id from Nats-Msg-Id, type from subject, occurred_at now",
			msgID: "msg-7",
			body:  ` {"user_id": 1, "data": { "a" : [1, 2] }, "unknown": {"ignored": true}} `,
			want:  Event{ID: "msg-7", Type: "upload.completed", UserID: 1, OccurredAt: now.UTC(), Data: json.RawMessage(`{ "a" : [1, 2] }`)},
		},
		{
			name:  "body id wins over Nats-Msg-Id",
			msgID: "msg-7",
			body:  `{"id":"evt:2","user_id":1,"data":{}}`,
			want:  Event{ID: "evt:2", Type: "upload.completed", UserID: 1, OccurredAt: now.UTC(), Data: json.RawMessage(`{}`)},
		},
		{
			name:  "null and empty count as absent",
			msgID: "msg-8",
			body:  `{"id":"","type":null,"user_id":9223372036854775807,"webhook_id":null,"occurred_at":null,"data":{}}`,
			want:  Event{ID: "msg-8", Type: "upload.completed", UserID: 9223372036854775807, OccurredAt: now.UTC(), Data: json.RawMessage(`{}`)},
		},
		{
			name: "escaped strings",
			body: `{"id":"evt\u005f3","type":"upload\u002ecompleted","user_id":5,"data":{"s":"\u00e9\n"}}`,
			want: Event{ID: "evt_3", Type: "upload.completed", UserID: 5, OccurredAt: now.UTC(), Data: json.RawMessage(`{"s":"\u00e9\n"}`)},
		},
	}
	for _, tt := range tests {
		got, err := Decode(subject, tt.msgID, []byte(tt.body), now)
		if err != nil {
			t.Errorf("%s: Decode(%q) = %v", tt.name, tt.body, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Decode(%q) mismatch (-want +got):\n%s", tt.name, tt.body, diff)
		}
	}
}

func TestDecodeGeneratesID(t *testing.T) {
	a, err := Decode(subject, "", []byte(`{"user_id":1,"data":{}}`), now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Decode(subject, "", []byte(`{"user_id":1,"data":{}}`), now)
	if u, err := uuid.Parse(a.ID); err != nil || u.Version() != 4 || a.ID == b.ID {
		t.Errorf("Decode(no id, no Nats-Msg-Id) ids = %q, %q, want two different UUIDv4s", a.ID, b.ID)
	}
}

func TestDecodeWithoutSubject(t *testing.T) {
	got, err := Decode("", "", []byte(`{"id":"e","type":"a.b","user_id":1,"data":{}}`), now)
	if err != nil || got.Type != "a.b" {
		t.Errorf("Decode(no subject, type a.b) = %+v, %v, want type a.b", got, err)
	}
	if _, err := Decode("", "", []byte(`{"id":"e","user_id":1,"data":{}}`), now); !isFieldError(err, "type", "required") {
		t.Errorf("Decode(no subject, no type) = %v, want type is required", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		subject string
		msgID   string
		body    string
		field   string
		problem string // a substring of the problem
	}{
		{subject, "", ``, "body", "JSON object"},
		{subject, "", `null`, "body", "JSON object"},
		{subject, "", `[{"user_id":1}]`, "body", "JSON object"},
		{subject, "", `"x"`, "body", "JSON object"},
		{subject, "", `{"user_id":1,`, "body", "not valid JSON"},
		{subject, "", `{"user_id":1,"data":{}} {}`, "body", "not valid JSON"},
		{subject, "", `{"user_id":1,"data":{}}x`, "body", "not valid JSON"},
		{"upload.completed", "", `{"user_id":1,"data":{}}`, "subject", "events.<type>"},
		{"events.", "", `{"user_id":1,"data":{}}`, "subject", "events.<type>"},
		{subject, "", `{"id":"a b","user_id":1,"data":{}}`, "id", "1 to 128"},
		{subject, "", `{"id":"` + strings.Repeat("a", 129) + `","user_id":1,"data":{}}`, "id", "1 to 128"},
		{subject, "", `{"id":7,"user_id":1,"data":{}}`, "id", "must be a string"},
		{subject, "bad msg id", `{"user_id":1,"data":{}}`, "id", "Nats-Msg-Id"},
		{subject, "", `{"type":"other.type","user_id":1,"data":{}}`, "type", "does not match"},
		{subject, "", `{"type":["upload.completed"],"user_id":1,"data":{}}`, "type", "must be a string"},
		{"events.Upload", "", `{"user_id":1,"data":{}}`, "type", "at most 100"},
		{"events.a.>", "", `{"user_id":1,"data":{}}`, "type", "at most 100"},
		{subject, "", `{"data":{}}`, "user_id", "required"},
		{subject, "", `{"user_id":null,"data":{}}`, "user_id", "required"},
		{subject, "", `{"user_id":0,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":-3,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":1.5,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":1.0,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":1e3,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":"1","data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":true,"data":{}}`, "user_id", "positive integer"},
		{subject, "", `{"user_id":9223372036854775808,"data":{}}`, "user_id", "below 2^63"},
		{subject, "", `{"user_id":1,"webhook_id":"nope","data":{}}`, "webhook_id", "not a UUID"},
		{subject, "", `{"user_id":1,"webhook_id":"","data":{}}`, "webhook_id", "not a UUID"},
		{subject, "", `{"user_id":1,"webhook_id":12,"data":{}}`, "webhook_id", "must be a string"},
		{subject, "", `{"user_id":1,"occurred_at":"yesterday","data":{}}`, "occurred_at", "RFC3339"},
		{subject, "", `{"user_id":1,"occurred_at":"2026-11-28 12:00:00","data":{}}`, "occurred_at", "RFC3339"},
		{subject, "", `{"user_id":1,"occurred_at":1700000000,"data":{}}`, "occurred_at", "must be a string"},
		{subject, "", `{"user_id":1,"occurred_at":"0000-01-01T00:30:00+01:00","data":{}}`, "occurred_at", "years"},
		{subject, "", `{"user_id":1}`, "data", "required"},
		{subject, "", `{"user_id":1,"data":null}`, "data", "required"},
		{subject, "", `{"user_id":1,"data":[]}`, "data", "JSON object"},
		{subject, "", `{"user_id":1,"data":"{}"}`, "data", "JSON object"},
		{subject, "", `{"user_id":1,"data":3}`, "data", "JSON object"},
	}
	for _, tt := range tests {
		got, err := Decode(tt.subject, tt.msgID, []byte(tt.body), now)
		if !isFieldError(err, tt.field, tt.problem) {
			t.Errorf("Decode(%q, %q, %.80s) = %+v, %v, want a %s FieldError mentioning %q", tt.subject, tt.msgID, tt.body, got, err, tt.field, tt.problem)
		}
	}
}

func isFieldError(err error, field, problem string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field && strings.Contains(fe.Problem, problem)
}

func TestEncode(t *testing.T) {
	e := Event{ID: "evt_1", Type: "upload.completed", UserID: 42, WebhookID: &webhookID,
		OccurredAt: time.Date(2026, 11, 28, 13, 30, 0, 120_000_000, time.FixedZone("CET", 3600)),
		Data:       json.RawMessage(`{"file_id": "f1"}`)}
	got, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"evt_1","type":"upload.completed","user_id":42,"webhook_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d",` +
		`"occurred_at":"2026-11-28T12:30:00.12Z","data":{"file_id": "f1"}}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("Encode(%+v) mismatch (-want +got):\n%s", e, diff)
	}
	// encoding/json must read it back into the same Event.
	var back Event
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("json.Unmarshal(Encode(e)) = %v", err)
	}
	if diff := cmp.Diff(e, back); diff != "" {
		t.Errorf("json.Unmarshal(Encode(e)) mismatch (-want +got):\n%s", diff)
	}

	e.WebhookID, e.ID = nil, `odd "id"`
	got, _ = Encode(e)
	if s := string(got); strings.Contains(s, "webhook_id") || !strings.Contains(s, `"id":"odd \"id\""`) {
		t.Errorf("Encode(no webhook id, odd id) = %s, want no webhook_id and an escaped id", got)
	}

	for _, data := range []string{"", "{", `{"a":}`} {
		e.Data = json.RawMessage(data)
		if got, err := Encode(e); err == nil {
			t.Errorf("Encode(data %q) = %s, nil, want an error", data, got)
		}
	}
	e.Data, e.OccurredAt = json.RawMessage(`{}`), time.Time{}.Add(-time.Hour)
	if got, err := Encode(e); err == nil {
		t.Errorf("Encode(year 0) = %s, nil, want an error", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(subject, "", []byte(`{"id":"evt_1","type":"upload.completed","user_id":42,"webhook_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d","occurred_at":"2026-11-28T10:30:00.5+01:00","data":{"file_id":"f1"}}`))
	f.Add(subject, "msg-1", []byte(`{"user_id":1,"data":{"a":[1,"\u00e9",null]}}`))
	f.Add("", "", []byte(`{"type":"a.b","user_id":1,"data":{},"id":"x\u0041"}`))
	f.Add("events.x", "m", []byte(`{"user_id":1.5,"data":[]}`))
	f.Add("events.x", "", []byte(`{"user_id":1,"data":{},"occurred_at":"9999-12-31T23:59:59-01:00"}`))
	f.Add("nope", "a b", []byte(`[]`))
	f.Fuzz(func(t *testing.T, subject, msgID string, body []byte) {
		e, err := Decode(subject, msgID, body, now)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode(%q, %q, %q) error %#v is not a *FieldError", subject, msgID, body, err)
			}
			return
		}
		if !ValidID(e.ID) || !ValidTypeName(e.Type) || e.UserID <= 0 || len(e.Data) == 0 || e.Data[0] != '{' {
			t.Fatalf("Decode(%q, %q, %q) = %+v, which breaks Decode's rules", subject, msgID, body, e)
		}
		b, err := Encode(e)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", body, err)
		}
		again, err := Decode(Subject(e.Type), "", b, now.Add(time.Hour))
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q)) = %s) = %v", body, b, err)
		}
		if diff := cmp.Diff(e, again); diff != "" {
			t.Fatalf("Decode(Encode(e)) != e for body %q (-e +again):\n%s", body, diff)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	body := []byte(`{"id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9e","type":"upload.completed","user_id":42,` +
		`"webhook_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9d","occurred_at":"2026-11-28T12:00:00.123456Z",` +
		`"data":{"file_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9f","file_name":"report.pdf","size":123456,` +
		`"content_type":"application/pdf","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"uploaded_at":"2026-11-28T12:00:00Z","download_url":"https://hookline.example/files/0193a8f2/content?sig=abc"}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(subject, "", body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	e := Event{ID: "0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9e", Type: "upload.completed", UserID: 42, WebhookID: &webhookID,
		OccurredAt: now, Data: json.RawMessage(`{"file_id":"0193a8f2-7c1e-7d2a-9b4c-3f5e6a7b8c9f","size":123456}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}
