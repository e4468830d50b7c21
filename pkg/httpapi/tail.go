package httpapi

import (
	"bufio"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

// The live tail, GET /attempts/stream: Server-Sent Events, one `event: attempt` per attempt
// the dispatcher committed, its data the delivery.Record the dispatcher published (forwarded
// as the bytes it is, never decoded here). Each stream subscribes on core NATS as narrowly as
// its key and filter allow (natsx.AttemptsSubject): a user key to its own user's subjects, the
// admin key to all, a webhook_id filter to that webhook's. Nothing queries PostgreSQL after
// the key and the filter are checked.
//
// A slow reader never slows the dispatcher or the other streams: NATS hands each stream's
// messages to a callback that never blocks, into a buffer of tailBuffer records; what does
// not fit is counted and said with `event: gap`, `data: {"skipped":N}`, just before the next
// attempt that fits. A reader that stops reading holds at most that buffer (and the socket's)
// until it goes away or the server shuts down.

// tailBuffer is how many attempts a stream holds for its reader.
const tailBuffer = 512

// tailHeartbeat is the default interval of the comment line that keeps proxies from closing
// an idle stream.
const tailHeartbeat = 15 * time.Second

// tailItem is an attempt to write, and how many were skipped just before it.
type tailItem struct {
	data    []byte
	skipped int64
}

// tail is one stream's subscription side.
type tail struct {
	ch      chan tailItem
	dropped int64 // skipped and not said yet; only receive touches it
}

// receive runs on the subscription's own goroutine (one per subscription, serial): it never
// blocks. A count of skipped attempts rides on the next attempt that fits, so the gap is said
// exactly where it was.
func (t *tail) receive(m *nats.Msg) {
	select {
	case t.ch <- tailItem{data: m.Data, skipped: t.dropped}:
		t.dropped = 0
	default:
		t.dropped++
	}
}

func (a *API) streamAttempts(c *fiber.Ctx) error {
	p := principal(c)
	user := p.UserID
	if p.Admin {
		user = 0 // every user
	}
	var hook string
	if s := c.Query("webhook_id"); s != "" {
		id, err := uuid.Parse(s)
		if err != nil {
			return fieldError("webhook_id", "must be a UUID")
		}
		w, err := store.GetWebhook(c.UserContext(), a.db, id)
		if err == nil && !p.may(w.UserID) {
			err = webhook.ErrNotFound
		}
		if err != nil {
			return notFoundOr(err, webhook.ErrNotFound, id)
		}
		hook, user = id.String(), w.UserID
	}
	heartbeat := a.opts.TailHeartbeat
	if heartbeat <= 0 {
		heartbeat = tailHeartbeat
	}
	nc := a.js.Conn()
	t := &tail{ch: make(chan tailItem, tailBuffer)}
	sub, err := nc.Subscribe(natsx.AttemptsSubject(user, hook), t.receive)
	if err == nil {
		// The server has the subscription once this round trip is back: an attempt committed
		// after the client read the first line is in the stream.
		err = nc.FlushTimeout(5 * time.Second)
	}
	if err != nil {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		a.log.Warn("live tail: subscribe", "err", err)
		return fail(fiber.StatusServiceUnavailable, "nats unreachable")
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	// Closed when the server shuts down, so a stream does not hold Shutdown for its timeout.
	done := c.Context().Done()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() { _ = sub.Unsubscribe() }()
		t.stream(w, done, heartbeat)
	})
	return nil
}

// stream writes until the reader goes away (a write fails) or the server shuts down.
func (t *tail) stream(w *bufio.Writer, done <-chan struct{}, heartbeat time.Duration) {
	if _, err := w.WriteString(": attempts stream open\n\n"); err != nil || w.Flush() != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
			_, _ = w.WriteString(": keepalive\n\n")
		case it := <-t.ch:
			writeItem(w, it)
		more:
			for range cap(t.ch) { // what else is here, then one flush
				select {
				case it := <-t.ch:
					writeItem(w, it)
				default:
					break more
				}
			}
		}
		if w.Flush() != nil {
			return // the reader is gone
		}
	}
}

func writeItem(w *bufio.Writer, it tailItem) {
	if it.skipped > 0 {
		writeGap(w, it.skipped)
	}
	_, _ = w.WriteString("event: attempt\ndata: ")
	_, _ = w.Write(it.data)
	_, _ = w.WriteString("\n\n")
}

func writeGap(w *bufio.Writer, n int64) {
	_, _ = w.WriteString(`event: gap` + "\n" + `data: {"skipped":`)
	_, _ = w.WriteString(strconv.FormatInt(n, 10))
	_, _ = w.WriteString("}\n\n")
}
