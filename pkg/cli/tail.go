package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/hookline/hookline/pkg/delivery"
)

// tail follows GET /attempts/stream until ctx ends (exit 0) or the stream breaks (exit 3):
// one line per attempt, or with --json the attempt's JSON object as it came, one a line.
func tail(c *client, args []string) error {
	fs := c.flags("tail")
	hook := fs.String("webhook-id", "", "only this webhook's attempts")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	setIf(q, "webhook_id", *hook)
	u := c.base + "/attempts/stream"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, u, nil)
	if err != nil {
		return usagef("%v", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	// No client timeout: the stream stays open; ctx ends it.
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		if c.ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("GET /attempts/stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &apiError{status: resp.StatusCode, message: strings.TrimSpace(string(raw))}
		var env envelope
		if json.Unmarshal(raw, &env) == nil {
			e.message = env.Message
			var p struct{ Field, Problem string }
			if json.Unmarshal(env.Data, &p) == nil {
				e.field, e.problem = p.Field, p.Problem
			}
		}
		return e
	}
	err = c.follow(resp.Body)
	if c.ctx.Err() != nil {
		return nil // interrupted: the normal end of a tail
	}
	if err == nil {
		err = errors.New("the stream ended (server shutting down?)")
	}
	return err
}

// follow reads Server-Sent Events and prints each attempt and gap as it comes.
func (c *client) follow(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var event string
	var data []string
	connected := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if err := c.event(event, strings.Join(data, "\n")); err != nil {
				return err
			}
			event, data = "", data[:0]
		case strings.HasPrefix(line, ":"): // a comment: the stream's opening line, then keepalives
			if !connected {
				// The server subscribed before this first line: attempts from now on show.
				connected = true
				fmt.Fprintln(c.errOut, "tailing attempts (Ctrl-C to stop)")
			}
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}

func (c *client) event(event, data string) error {
	switch event {
	case "attempt":
		if c.json {
			_, err := fmt.Fprintln(c.out, data)
			return err
		}
		var r delivery.Record
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return fmt.Errorf("unreadable attempt %q: %w", data, err)
		}
		_, err := fmt.Fprintln(c.out, attemptLine(r))
		return err
	case "gap":
		var g struct{ Skipped int64 }
		_ = json.Unmarshal([]byte(data), &g)
		if c.json {
			_, err := fmt.Fprintf(c.out, "{\"gap\":{\"skipped\":%d}}\n", g.Skipped)
			return err
		}
		_, err := fmt.Fprintf(c.out, "… %d attempts skipped: this tail read too slowly\n", g.Skipped)
		return err
	}
	return nil // an event this client does not know
}

// attemptLine is one attempt as a readable line: when, outcome, answer, how long, which.
func attemptLine(r delivery.Record) string {
	code := "---"
	if r.StatusCode != 0 {
		code = fmt.Sprint(r.StatusCode)
	}
	s := fmt.Sprintf("%s  %-9s  %s  %8.1fms  #%d  %s  event=%s  delivery=%s  webhook=%s",
		r.At, r.Status, code, r.LatencyMS, r.Attempt, r.EventType, r.EventID, r.DeliveryID, r.WebhookID)
	if r.Error != "" {
		s += "  error=" + strings.ReplaceAll(r.Error, "\n", " ")
	}
	return s
}
