package chaostest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/processor"
)

// result is one scenario run's line in docs/reliability.md.
type result struct {
	Scenario   string  `json:"scenario"`
	Events     int     `json:"events"`   // acknowledged by JetStream (POST /events 200 or a PubAck)
	Refused    int     `json:"refused"`  // never acknowledged within the load's give-up time
	Expected   int     `json:"expected"` // deliveries owed for the acknowledged events
	Lost       int     `json:"lost"`     // owed and never received
	Duplicates int     `json:"duplicates"`
	Recover    float64 `json:"recover_s"` // from the end of the fault to the last delivery owed for events acknowledged before it
	Drain      float64 `json:"drain_s"`   // from the end of the load to the last delivery owed
	// Each delivery is owed within Bound of the fault's end or of its event's acknowledgement,
	// whichever is later; Late counts those that arrived after (or never), MaxWait is the
	// longest any took, measured the same way.
	Bound      float64        `json:"bound_s"`
	Late       int            `json:"late"`
	MaxWait    float64        `json:"max_wait_s"`
	Extra      map[string]any `json:"extra,omitempty"` // what the scenario measured besides
	Unexpected int            `json:"unexpected"`
	BadSig     int            `json:"bad_signatures"`
	Failed     int            `json:"answered_500"`   // requests the receiver failed on purpose
	Stuck      int            `json:"stuck"`          // delivery_states rows not succeeded once all arrived
	NoAttempt  int            `json:"no_attempt_row"` // receipts without a successful attempt row
	TwoSuccess int            `json:"multiple_success_rows"`
	Reposted   int            `json:"reposted_after_recorded"` // deliveries recorded as succeeded at a crash, POSTed again after it
	APIErrors  string         `json:"api_errors"`
	// Uploads answered 200 (their deliveries are owed, in Expected); UploadsUnanswered tried
	// without a 200 (retried as new uploads); UploadsUnowed deliveries came for uploads never
	// answered 200 (allowed: at most one per such try); NoFileRow uploads answered 200
	// without their files row.
	Uploads           int            `json:"uploads,omitempty"`
	UploadsUnanswered int            `json:"uploads_unanswered,omitempty"`
	UploadsUnowed     int            `json:"upload_deliveries_unanswered,omitempty"`
	NoFileRow         int            `json:"uploads_without_file_row,omitempty"`
	NATSErrors        int            `json:"nats_errors"`
	LogLines          map[string]int `json:"log_lines"` // each service's log, all runs together
	Built             string         `json:"built_from"`
	At                time.Time      `json:"at"`
}

// lostAfter is how long past its bound a delivery is still waited for before it counts as lost
// rather than late.
const lostAfter = 120 * time.Second

// check waits until every delivery owed for the load's acknowledged events reached the
// receiver (distinct webhook-id), each within `within` of the later of the fault's end and its
// event's acknowledgement (else it is late), or lostAfter more (else lost), then checks PostgreSQL:
// no delivery left short of succeeded in delivery_states, every receipt with its successful
// attempt row, no delivery with two success rows.
func check(t *testing.T, name string, s *stack, rv *receiver, ld *loader, faultEnd time.Time, within time.Duration) result {
	t.Helper()
	r := result{Scenario: name, Built: builtFrom, At: time.Now().UTC(), Bound: within.Seconds(), Extra: s.notes}
	owed := map[string]time.Time{} // delivery id -> when its event was acknowledged
	for _, e := range ld.events {
		if e.accepted.IsZero() {
			r.Refused++
			continue
		}
		r.Events++
		for _, h := range s.webhooks {
			if h.user == e.user && slices.Contains(h.types, e.typ) {
				owed[processor.DeliveryID(e.id, h.id).String()] = e.accepted
			}
		}
	}
	ld.mu.Lock()
	uploads := slices.Clone(ld.uploads)
	r.Uploads, r.UploadsUnanswered = len(uploads), ld.uploadsUnanswered
	if len(ld.uploadStatus) > 0 {
		s.notes["upload_answers_not_200"] = maps.Clone(ld.uploadStatus)
	}
	ld.mu.Unlock()
	after := 0
	for _, u := range uploads {
		owed[processor.DeliveryID(u.eventID, u.webhook).String()] = u.accepted
		if u.accepted.After(faultEnd) {
			after++
		}
	}
	if len(uploads) > 0 {
		s.notes["uploads_after_fault"] = after
	}
	r.Expected = len(owed)
	missing := func() int {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		n := 0
		for id := range owed {
			if rv.seen[id] == nil {
				n++
			}
		}
		return n
	}
	var latest time.Time // the last bound of any delivery
	for _, acc := range owed {
		latest = maxTime(latest, maxTime(acc, faultEnd))
	}
	deadline := latest.Add(within + lostAfter)
	for missing() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	rv.mu.Lock()
	var last, lastBefore time.Time
	for id, acc := range owed {
		from := maxTime(acc, faultEnd)
		rc := rv.seen[id]
		if rc == nil {
			r.Lost++
			r.Late++
			continue
		}
		if wait := rc.first.Sub(from); wait > within {
			r.Late++
		} else {
			r.MaxWait = max(r.MaxWait, wait.Seconds())
		}
		last = maxTime(last, rc.first)
		if acc.Before(faultEnd) {
			lastBefore = maxTime(lastBefore, rc.first)
		}
	}
	for id, acc := range owed {
		if rc := rv.seen[id]; rc != nil {
			r.MaxWait = max(r.MaxWait, rc.first.Sub(maxTime(acc, faultEnd)).Seconds())
		}
	}
	for id := range s.recorded {
		if rc := rv.seen[id]; rc != nil && rc.count > 1 && rc.last.After(s.crashed) {
			r.Reposted++
		}
	}
	received := map[string]bool{}
	for id, rc := range rv.seen {
		received[id] = true
		r.Duplicates += rc.count - 1
		if _, ok := owed[id]; !ok {
			if rc.upload {
				r.UploadsUnowed++
			} else {
				r.Unexpected++
			}
		}
	}
	r.BadSig, r.Failed = rv.badSig, rv.failed
	rv.mu.Unlock()
	r.Recover = max(0, lastBefore.Sub(faultEnd).Seconds())
	r.Drain = max(0, last.Sub(ld.ended).Seconds())
	ld.mu.Lock()
	if len(ld.apiStatus) > 0 {
		b, _ := json.Marshal(ld.apiStatus)
		r.APIErrors = string(b)
	}
	r.NATSErrors = ld.natsErrs
	ld.mu.Unlock()

	r.LogLines = map[string]int{}
	for _, sv := range s.services() {
		b, _ := os.ReadFile(sv.log)
		r.LogLines[sv.name] = bytes.Count(b, []byte("\n"))
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func(q string) int {
		var n int
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	// The last attempts' rows are written in batches after the receiver answered.
	stuckQ := "SELECT count(*) FROM delivery_states WHERE status <> 'succeeded'"
	for wait := time.Now().Add(30 * time.Second); count(stuckQ) > 0 && time.Now().Before(wait); {
		time.Sleep(200 * time.Millisecond)
	}
	r.Stuck = count(stuckQ)
	if len(uploads) > 0 {
		files := map[string]string{} // event id -> file id
		rows, err := conn.Query(ctx, "SELECT event_id, id::text FROM files")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var ev, id string
			if err := rows.Scan(&ev, &id); err != nil {
				t.Fatal(err)
			}
			files[ev] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for _, u := range uploads {
			if files[u.eventID] != u.fileID {
				r.NoFileRow++
			}
		}
	}
	success := successRows(t, conn)
	for id := range received {
		if success[id] == 0 {
			r.NoAttempt++
		}
	}
	for _, n := range success {
		if n > 1 {
			r.TwoSuccess++
		}
	}
	if r.Stuck > 0 || r.Lost > 0 {
		diagnose(t, s, conn)
	}
	return r
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// report logs the result and appends it, as a JSON line, to $HOOKLINE_CHAOS_REPORT when set.
func report(t *testing.T, r result) {
	b, _ := json.Marshal(r)
	t.Logf("RESULT %s", b)
	if path := os.Getenv("HOOKLINE_CHAOS_REPORT"); path != "" {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		fmt.Fprintf(f, "%s\n", b)
	}
}

// verdict fails the test on what must hold after every scenario. With bound, a delivery that
// came later than r.Bound after the fault's end (or its event) fails it too: `make chaos`
// holds Hookline to that; the quick subset in `make test` checks correctness only.
func verdict(t *testing.T, r result, bound bool) {
	t.Helper()
	if r.Lost > 0 {
		t.Errorf("%s: %d of %d owed deliveries never arrived", r.Scenario, r.Lost, r.Expected)
	}
	if bound && r.Late > r.Lost {
		t.Errorf("%s: %d of %d owed deliveries arrived more than %.0fs after the fault ended (or their event was acknowledged); the longest took %.1fs",
			r.Scenario, r.Late-r.Lost, r.Expected, r.Bound, r.MaxWait)
	}
	if r.NoFileRow > 0 {
		t.Errorf("%s: %d of %d uploads answered 200 have no files row", r.Scenario, r.NoFileRow, r.Uploads)
	}
	if r.UploadsUnowed > r.UploadsUnanswered {
		t.Errorf("%s: %d upload.completed deliveries of uploads never answered 200, more than the %d such tries",
			r.Scenario, r.UploadsUnowed, r.UploadsUnanswered)
	}
	if r.BadSig > 0 {
		t.Errorf("%s: %d requests failed signature verification", r.Scenario, r.BadSig)
	}
	if r.Stuck > 0 {
		t.Errorf("%s: %d deliveries not succeeded in delivery_states", r.Scenario, r.Stuck)
	}
	if r.NoAttempt > 0 {
		t.Errorf("%s: %d received deliveries have no successful attempt row", r.Scenario, r.NoAttempt)
	}
	if r.Reposted > 0 {
		t.Errorf("%s: %d deliveries recorded as succeeded when the dispatcher died were POSTed again", r.Scenario, r.Reposted)
	}
	if r.TwoSuccess > 0 {
		t.Errorf("%s: %d deliveries have more than one success row", r.Scenario, r.TwoSuccess)
	}
}

// diagnose logs what an operator would look at when deliveries are missing: the rows that are
// not succeeded, and the streams' and consumers' state.
func diagnose(t *testing.T, s *stack, conn *pgx.Conn) {
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT d.id::text, d.event_id, d.status, d.attempt_count, d.created_at, d.updated_at,
		(SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id)
		FROM delivery_states s JOIN deliveries d USING (id) WHERE s.status <> 'succeeded' ORDER BY d.created_at LIMIT 10`)
	if err == nil {
		for rows.Next() {
			var id, ev, st string
			var n, att int
			var created, updated time.Time
			if err := rows.Scan(&id, &ev, &st, &n, &created, &updated, &att); err == nil {
				t.Logf("not succeeded: delivery %s event %s status %s attempt_count %d created %s updated %s attempt rows %d",
					id, ev, st, n, created.Format(time.StampMilli), updated.Format(time.StampMilli), att)
			}
		}
		rows.Close()
	}
	for _, sv := range s.services() {
		resp, err := http.Get("http://" + sv.addr + "/readyz")
		if err != nil {
			t.Logf("%s /readyz: %v", sv.name, err)
			continue
		}
		resp.Body.Close()
		t.Logf("%s /readyz: %d", sv.name, resp.StatusCode)
	}
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Logf("diagnose: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for _, name := range []string{"EVENTS", "DELIVERIES"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		info, _ := st.Info(ctx)
		if info != nil {
			t.Logf("stream %s: msgs %d first %d last %d deleted %d", name, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, info.State.NumDeleted)
		}
		for c := range st.ListConsumers(ctx).Info() {
			t.Logf("consumer %s/%s: pending %d ack_pending %d redelivered %d waiting %d delivered %d ack_floor %d",
				name, c.Name, c.NumPending, c.NumAckPending, c.NumRedelivered, c.NumWaiting, c.Delivered.Stream, c.AckFloor.Stream)
		}
	}
}

// consumerState says how many messages each consumer has pending and awaiting an ack.
func consumerState(s *stack) string {
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return err.Error()
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for _, name := range []string{"EVENTS", "DELIVERIES"} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		for c := range st.ListConsumers(ctx).Info() {
			out = append(out, fmt.Sprintf("%s: %d pending, %d awaiting an ack", c.Name, c.NumPending, c.NumAckPending))
		}
	}
	return strings.Join(out, "; ")
}

// successRows counts each delivery's successful attempt rows.
func successRows(t *testing.T, conn *pgx.Conn) map[string]int {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, `SELECT delivery_id::text,
		count(*) FILTER (WHERE status_code BETWEEN 200 AND 299 AND error IS NULL)
		FROM delivery_attempts GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	success := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		success[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return success
}
