package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"
)

func filterEvent(data string) Doc {
	return NewDoc(Event{ID: "e1", Type: "invoice.paid", UserID: 7, OccurredAt: time.Now(), Data: json.RawMessage(data)})
}

func TestFilterMatch(t *testing.T) {
	ev := filterEvent(`{"amount":4200,"currency":"EUR","tags":["vip","eu"],"customer":{"country":"DE","id":"c1"},"note":null,
		"lines":[{"sku":"a"},{"sku":"b"}]}`)
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{`{}`, true},
		{`{"type":"invoice.paid"}`, true},
		{`{"type":"invoice.void"}`, false},
		{`{"user_id":7}`, true},
		{`{"user_id":{"$in":[1,2]}}`, false},
		{`{"data.currency":"EUR","data.amount":4200}`, true},
		{`{"data.currency":"EUR","data.amount":1}`, false},
		{`{"data.amount":{"$gt":1000,"$lte":4200}}`, true},
		{`{"data.amount":{"$gte":4201}}`, false},
		{`{"data.amount":{"$lt":"5000"}}`, false}, // a number is not ordered against a string
		{`{"data.currency":{"$gte":"E","$lt":"F"}}`, true},
		{`{"data.currency":{"$ne":"USD"}}`, true},
		{`{"data.missing":{"$ne":"USD"}}`, true},
		{`{"data.missing":{"$exists":false}}`, true},
		{`{"data.note":{"$exists":true}}`, true},
		{`{"data.note":null}`, true},
		{`{"data.currency":{"$in":["USD","EUR"]}}`, true},
		{`{"data.currency":{"$nin":["USD","EUR"]}}`, false},
		{`{"data.tags":{"$contains":"vip"}}`, true},
		{`{"data.tags":{"$contains":"us"}}`, false},
		{`{"data.customer.country":{"$contains":"D"}}`, true},
		{`{"data.customer":{"country":"DE","id":"c1"}}`, true},
		{`{"data.lines.1.sku":"b"}`, true},
		{`{"data.lines.5.sku":{"$exists":true}}`, false},
		{`{"$or":[{"data.currency":"USD"},{"data.amount":{"$gt":4000}}]}`, true},
		{`{"$or":[{"data.currency":"USD"},{"data.amount":{"$gt":5000}}]}`, false},
		{`{"$and":[{"type":"invoice.paid"},{"$or":[{"data.customer.country":"FR"},{"data.tags":{"$contains":"eu"}}]}]}`, true},
	} {
		f, err := ParseFilter("filter", []byte(c.filter))
		if err != nil {
			t.Fatalf("ParseFilter(%s) = %v", c.filter, err)
		}
		if got := f.Match(ev); got != c.want {
			t.Errorf("Match(%s) = %v, want %v", c.filter, got, c.want)
		}
	}
}

func TestParseFilterRefuses(t *testing.T) {
	for _, c := range []struct{ filter, field string }{
		{`[1]`, "filter"},
		{`"x"`, "filter"},
		{`{"amount":1}`, "filter.amount"},
		{`{"data.":1}`, "filter.data."},
		{`{"type.x":1}`, "filter.type.x"},
		{`{"data.a":{"$regex":"x"}}`, "filter.data.a.$regex"},
		{`{"data.a":{"$gt":true}}`, "filter.data.a.$gt"},
		{`{"data.a":{"$in":3}}`, "filter.data.a.$in"},
		{`{"data.a":{"$exists":1}}`, "filter.data.a.$exists"},
		{`{"data.a":{"$eq":1,"b":2}}`, "filter.data.a"},
		{`{"$or":[]}`, "filter.$or"},
		{`{"$or":[{"data.a":1},{"nope":1}]}`, "filter.$or[1].nope"},
		{`{"$not":{}}`, "filter.$not"},
	} {
		_, err := ParseFilter("filter", []byte(c.filter))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("ParseFilter(%s) = %v, want a field error on %s", c.filter, err, c.field)
		}
	}
	deep := `{"data.a":1}`
	for range maxFilterDepth + 1 {
		deep = `{"$or":[` + deep + `]}`
	}
	if _, err := ParseFilter("filter", []byte(deep)); err == nil {
		t.Errorf("a filter nested %d deep was accepted", maxFilterDepth+1)
	}
}

// BenchmarkFilter measures events/s through one filter each: the processor decodes an event's
// data once (NewDoc, measured alone) and then matches it against every filtered subscriber.
func BenchmarkFilter(b *testing.B) {
	data := `{"amount":4200,"currency":"EUR","tags":["vip","eu"],"customer":{"country":"DE","id":"c1"},
		"lines":[{"sku":"a","qty":1},{"sku":"b","qty":2}],"note":"paid by card"}`
	ev := Event{ID: "e1", Type: "invoice.paid", UserID: 7, OccurredAt: time.Now(), Data: json.RawMessage(data)}
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			_ = NewDoc(ev)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	doc := NewDoc(ev)
	for _, c := range []struct{ name, filter string }{
		{"type", `{"type":"invoice.paid"}`},
		{"equality", `{"data.currency":"EUR"}`},
		{"range", `{"data.amount":{"$gte":1000,"$lt":10000}}`},
		{"in", `{"data.customer.country":{"$in":["DE","FR","NL","BE","AT"]}}`},
		{"contains", `{"data.tags":{"$contains":"vip"}}`},
		{"nested", `{"data.lines.1.sku":"b"}`},
		{"or-and", `{"$or":[{"data.currency":"USD"},{"$and":[{"data.amount":{"$gt":4000}},{"data.tags":{"$contains":"eu"}}]}]}`},
		{"five-keys", `{"type":"invoice.paid","user_id":7,"data.currency":"EUR","data.amount":{"$gt":0},"data.note":{"$exists":true}}`},
	} {
		f, err := ParseFilter("filter", []byte(c.filter))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if !f.Match(doc) {
					b.Fatal(fmt.Sprint("no match: ", c.filter))
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
