package delivery

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// AppendRecord writes JSON that decodes to the record it was given, whatever the texts hold.
func TestAppendRecord(t *testing.T) {
	at := time.Date(2026, 12, 2, 11, 4, 5, 999, time.FixedZone("CET", 3600))
	for _, r := range []Record{
		{DeliveryID: uuid.New(), WebhookID: uuid.New(), EventID: "inv-1", EventType: "invoice.paid", Attempt: 1,
			Status: StatusSucceeded, StatusCode: 200},
		{DeliveryID: uuid.New(), WebhookID: uuid.New(), EventID: `a"b\c`, EventType: "x", Attempt: 8, Status: StatusFailed,
			Error: "dial: \"connection refused\"\n<é>\x00&"},
	} {
		b := AppendRecord(nil, &r, 2500*time.Microsecond, at)
		var got Record
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendRecord = %s: %v", b, err)
		}
		want := r
		want.LatencyMS, want.At = 2.5, "2026-12-02 10:04:05"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("AppendRecord = %s, decoded (-want +got):\n%s", b, diff)
		}
		var raw map[string]any
		_ = json.Unmarshal(b, &raw)
		if r.StatusCode == 0 && raw["status_code"] != nil || r.Error == "" && raw["error"] != nil {
			t.Errorf("AppendRecord = %s: want null status_code and error when absent", b)
		}
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	r := Record{DeliveryID: uuid.New(), WebhookID: uuid.New(), EventID: "inv-2026-000123", EventType: "invoice.paid",
		Attempt: 1, Status: StatusSucceeded, StatusCode: 200}
	at := time.Now()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRecord(buf[:0], &r, 3*time.Millisecond, at)
	}
}
