package processor

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/delivery"
	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/metrics"
	"github.com/hookline/hookline/pkg/store"
)

// row is one message of a batch on its way to PostgreSQL: an accepted event or a rejection.
type row struct {
	msg    jetstream.Msg
	acc    *store.AcceptedEvent
	rej    *store.Rejection
	reason string // a rejection's metric label
	// filtered counts the subscribers of an accepted event whose filter did not match.
	filtered int
}

func (r row) eventID() string {
	if r.acc != nil {
		return r.acc.ID
	}
	return r.rej.EventID
}

func splitRows(rs []row) ([]store.AcceptedEvent, []store.Rejection) {
	var (
		acc []store.AcceptedEvent
		rej []store.Rejection
	)
	for _, r := range rs {
		if r.acc != nil {
			acc = append(acc, *r.acc)
		} else {
			rej = append(rej, *r.rej)
		}
	}
	return acc, rej
}

// decoded is a message whose event decoded.
type decoded struct {
	msg jetstream.Msg
	ev  event.Event
	seq uint64 // EVENTS stream sequence: the order of a FIFO webhook's deliveries
	// upload is the data of an upload.completed event that announces a file (data.file_id);
	// nil otherwise, and for data that does not decode (accept rejects that as malformed).
	upload *event.UploadData
}

// batch is what the processor decides about each message of one pull: accept (with its
// deliveries) or reject (with the reason), in one place, so each message is acked or
// terminated exactly once after the batch is written.
type batch struct {
	decoded   []decoded
	malformed []row // rejected while decoding: independent of the subscriptions
	// fileOwners is the user of each file an upload event announces that exists already.
	fileOwners map[uuid.UUID]int64
	accepted   []row
	rejected   []row
}

func newBatch(msgs []jetstream.Msg, now time.Time) *batch {
	b := &batch{}
	for _, m := range msgs {
		msgID := m.Headers().Get(nats.MsgIdHdr)
		e, err := event.Decode(m.Subject(), msgID, m.Data(), now)
		if err != nil {
			b.malformed = append(b.malformed, rejection(m, event.PeekID(m.Data(), msgID), "malformed", err.Error()))
			continue
		}
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		d := decoded{msg: m, ev: e, seq: seq}
		if e.Type == event.UploadCompleted {
			var u event.UploadData
			if json.Unmarshal(e.Data, &u) == nil && u.FileID != uuid.Nil {
				d.upload = &u
			}
		}
		b.decoded = append(b.decoded, d)
	}
	return b
}

// announcedFiles returns the file ids the batch's upload events announce.
func (b *batch) announcedFiles() []uuid.UUID {
	var ids []uuid.UUID
	for _, d := range b.decoded {
		if d.upload != nil {
			ids = append(ids, d.upload.FileID)
		}
	}
	return ids
}

// notOwned says why an upload.completed event names a file or webhook its user does not own,
// or "" when it does not (or announces no file). The webhook is checked through the event's
// own webhook_id, which Resolve has matched against the user's webhooks: the file must be
// announced to that webhook. The file must not exist as another user's.
func notOwned(e event.Event, u *event.UploadData, owners map[uuid.UUID]int64) string {
	switch {
	case u == nil:
		return ""
	case e.WebhookID == nil || *e.WebhookID != u.WebhookID:
		return "data.webhook_id " + strconv.Quote(u.WebhookID.String()) +
			" is not the event's webhook_id: an upload.completed that announces a file is sent to that file's webhook"
	}
	if owner, ok := owners[u.FileID]; ok && owner != e.UserID {
		return "data.file_id " + strconv.Quote(u.FileID.String()) + " is not a file of user " + strconv.FormatInt(e.UserID, 10)
	}
	return ""
}

func (b *batch) refs() []store.EventRef {
	refs := make([]store.EventRef, len(b.decoded))
	for i, d := range b.decoded {
		refs[i] = store.EventRef{UserID: d.ev.UserID, Type: d.ev.Type, WebhookID: d.ev.WebhookID}
	}
	return refs
}

// classify decides each decoded event from its resolution (res[i] is b.decoded[i]'s). The
// event type's schema, when it has one, is checked before the user: the same order as
// POST /events, which answers a 422 for it before anything is looked up.
func (b *batch) classify(res []store.Resolution, schemas *event.Schemas, filters *event.Filters) {
	b.accepted = b.accepted[:0]
	b.rejected = append(b.rejected[:0], b.malformed...)
	for i, d := range b.decoded {
		r, e := res[i], d.ev
		var invalid error
		if !r.UnknownType && r.Schema != nil {
			invalid = schemaError(schemas, r.Schema, e.Data)
		}
		switch {
		case r.UnknownType:
			b.reject(d.msg, e.ID, "unknown_type", "no event type named "+strconv.Quote(e.Type))
		case invalid != nil:
			b.reject(d.msg, e.ID, "schema", invalid.Error())
		case r.UnknownUser:
			b.reject(d.msg, e.ID, "unknown_user", "user "+strconv.FormatInt(e.UserID, 10)+" has no webhook registration")
		case e.WebhookID != nil && len(r.Targets) == 0:
			b.reject(d.msg, e.ID, "unknown_webhook", "webhook "+e.WebhookID.String()+" is not an enabled subscriber of this user")
		case d.upload != nil && notOwned(e, d.upload, b.fileOwners) != "":
			b.reject(d.msg, e.ID, "not_owner", notOwned(e, d.upload, b.fileOwners))
		default:
			targets, filtered := matching(e, r.Targets, filters)
			a, err := accept(e, targets, d.seq)
			if err != nil {
				b.reject(d.msg, e.ID, "malformed", err.Error())
				continue
			}
			b.accepted = append(b.accepted, row{msg: d.msg, acc: &a, filtered: filtered})
		}
	}
}

// schemaError checks data against the event type's schema. A schema that no longer compiles
// (the API only stores ones that do) refuses every event, with that reason.
func schemaError(schemas *event.Schemas, schema, data []byte) error {
	s, err := schemas.Get(schema)
	if err != nil {
		return errors.New("the event type's schema " + err.Error())
	}
	return s.Validate(data)
}

// matching keeps the targets whose payload filter the event matches (or that have none) and
// counts the others. The event is decoded for filters once, only when some target has one. A
// stored filter that no longer parses (the API stores only ones that do) lets the event through:
// a receiver gets an event too many rather than silently none.
func matching(e event.Event, targets []store.Subscription, filters *event.Filters) ([]store.Subscription, int) {
	if !slices.ContainsFunc(targets, func(t store.Subscription) bool { return t.Filter != nil }) {
		return targets, 0 // the common case: nothing to decode
	}
	var (
		doc  event.Doc
		kept = make([]store.Subscription, 0, len(targets))
	)
	for _, t := range targets {
		if t.Filter != nil {
			f, err := filters.Get(t.Filter)
			if err == nil {
				if doc == nil {
					doc = event.NewDoc(e)
				}
				if doc != nil && !f.Match(doc) {
					continue
				}
			}
		}
		kept = append(kept, t)
	}
	return kept, len(targets) - len(kept)
}

// reject records that m is rejected (also when it was accepted so far: PostgreSQL refused
// it) and returns its rejection row.
func (b *batch) reject(m jetstream.Msg, id, reason, detail string) row {
	for i, r := range b.accepted {
		if r.msg == m {
			b.accepted = append(b.accepted[:i], b.accepted[i+1:]...)
			break
		}
	}
	r := rejection(m, id, reason, detail)
	for _, d := range b.decoded {
		if d.msg == m {
			r.rej.UserID = d.ev.UserID // its per-user cap in rejected_events
			break
		}
	}
	b.rejected = append(b.rejected, r)
	return r
}

func rejection(m jetstream.Msg, id, reason, detail string) row {
	rej := &store.Rejection{EventID: id, Subject: m.Subject(), Reason: reason, Payload: m.Data()}
	if detail != "" {
		rej.Reason = reason + ": " + detail
	}
	if md, err := m.Metadata(); err == nil {
		rej.StreamSeq = md.Sequence.Stream
	}
	return row{msg: m, rej: rej, reason: reason}
}

func (b *batch) rows() []row {
	return append(append(make([]row, 0, len(b.accepted)+len(b.rejected)), b.accepted...), b.rejected...)
}

// existing returns the deliveries of the accepted events that the save did not create (they
// existed already), given what it created; none when new deliveries wait for the scheduler
// (firstWait > 0), which then owns them all.
func (b *batch) existing(created []delivery.Due, firstWait time.Duration) []uuid.UUID {
	if firstWait > 0 {
		return nil
	}
	made := make(map[uuid.UUID]bool, len(created))
	for _, d := range created {
		made[d.ID] = true
	}
	var ids []uuid.UUID
	for _, r := range b.accepted {
		for _, d := range r.acc.Deliveries {
			if !made[d.ID] {
				ids = append(ids, d.ID)
			}
		}
	}
	return ids
}

// settle acks the accepted events and terminates the rejected ones, once the batch is written.
func (b *batch) settle(m *metrics.Set) {
	for _, r := range b.accepted {
		_ = r.msg.Ack() // a lost ack means a redelivery, which creates nothing twice
		m.EventsProcessed.WithLabelValues(r.acc.Type).Inc()
		if r.filtered > 0 {
			m.EventsFiltered.WithLabelValues(r.acc.Type).Add(float64(r.filtered))
		}
	}
	for _, r := range b.rejected {
		_ = r.msg.TermWithReason(r.reason)
		m.EventsRejected.WithLabelValues(r.reason).Inc()
	}
}
