// Package cli is the `hookline` binary's client for the ingress API: event types, webhooks,
// deliveries, events and the live tail, from a shell. It speaks HTTP to HOOKLINE_URL (default
// http://127.0.0.1:8081) with the key in HOOKLINE_API_KEY, prints tables by default and the
// API's JSON as it came with --json, and exits with a code that says what failed (see Exit*).
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Exit codes of Run.
const (
	ExitOK          = 0 // done
	ExitUsage       = 1 // bad command, flag or argument; nothing was sent
	ExitClientError = 2 // the API answered 4xx: the request was refused (key, id, field)
	ExitServerError = 3 // the API answered 5xx, or could not be reached, or a stream broke
)

// DefaultURL is HOOKLINE_URL when it is unset.
const DefaultURL = "http://127.0.0.1:8081"

// commands are Run's first words; Is tells the binary which arguments are the client's.
var commands = map[string]func(*client, []string) error{
	"event-types": eventTypes,
	"webhooks":    webhooks,
	"deliveries":  deliveries,
	"events":      events,
	"tail":        tail,
}

// Is reports whether cmd is one of the client's commands.
func Is(cmd string) bool { _, ok := commands[cmd]; return ok || cmd == "help" }

// Usage is the client's help text.
const Usage = `usage: hookline <command> [flags]   (HOOKLINE_URL, default ` + DefaultURL + `; HOOKLINE_API_KEY)

  event-types list
  event-types create --name NAME [--description TEXT] [--schema JSON]
  webhooks list [--user-id N] [--limit N] [--cursor C]
  webhooks get ID
  webhooks create --user-id N --url URL --event-type NAME|ID... [--header K=V...] [--body JSON]
  webhooks update ID [--url URL] [--event-type NAME|ID...] [--enabled true|false] [--header K=V...] [--body JSON]
  webhooks delete ID
  webhooks rotate-secret ID
  deliveries list WEBHOOK_ID [--status S] [--limit N] [--cursor C]
  deliveries get ID
  deliveries retry ID
  events send --type TYPE --user-id N --data JSON [--id ID] [--webhook-id ID]
  events get ID [--user-id N]
  events list [--type TYPE] [--user-id N] [--since T] [--until T] [--limit N] [--cursor C]
  tail [--webhook-id ID]

Every command takes --json: the API's JSON as it came (tail: one attempt object a line).
Exit codes: 0 ok, 1 usage, 2 the API answered 4xx, 3 the API answered 5xx or was unreachable.
`

// Run runs one client command (args without the program name) and returns the exit code.
// getenv reads HOOKLINE_URL and HOOKLINE_API_KEY. Tables and results go to stdout, errors to
// stderr. ctx ending stops a tail (exit 0) or cuts a request.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, Usage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	run, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "hookline: unknown command %q\n%s", args[0], Usage)
		return ExitUsage
	}
	base := strings.TrimRight(getenv("HOOKLINE_URL"), "/")
	if base == "" {
		base = DefaultURL
	}
	c := &client{ctx: ctx, base: base, key: getenv("HOOKLINE_API_KEY"), out: stdout, errOut: stderr,
		http: &http.Client{Timeout: 60 * time.Second}}
	err := run(c, args[1:])
	var (
		usage *usageError
		api   *apiError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "hookline %s: %v\n", args[0], err)
		return ExitUsage
	case errors.As(err, &api):
		fmt.Fprintf(stderr, "hookline %s: %v\n", args[0], err)
		if api.status >= 400 && api.status < 500 {
			return ExitClientError
		}
		return ExitServerError
	default: // unreachable, a broken stream, an answer that is not the API's
		fmt.Fprintf(stderr, "hookline %s: %v\n", args[0], err)
		return ExitServerError
	}
}

// usageError is a command line Run refuses before sending anything.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// apiError is an answer of 4xx or 5xx: the envelope's message and, for a 422, the field.
type apiError struct {
	status  int
	message string
	field   string
	problem string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%d %s", e.status, e.message)
	if e.field != "" {
		s += fmt.Sprintf(" (%s: %s)", e.field, e.problem)
	}
	return s
}

// client sends requests to the API.
type client struct {
	ctx  context.Context
	base string
	key  string
	out  io.Writer
	// errOut takes notes for a person (the tail's "connected"), never results
	errOut io.Writer
	http   *http.Client
	json   bool // --json: print answers as they came
}

// envelope is the API's answer: {"message", "data", "error"} (+ next_cursor on a page).
type envelope struct {
	Message    string          `json:"message"`
	Data       json.RawMessage `json:"data"`
	Error      bool            `json:"error"`
	NextCursor string          `json:"next_cursor"`
	raw        []byte
}

// do sends one request; body, when not nil, is sent as JSON. A 4xx or 5xx is an *apiError.
func (c *client) do(method, path string, query url.Values, body any) (*envelope, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(c.ctx, method, u, r)
	if err != nil {
		return nil, usagef("%v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, c.base, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	var env envelope
	decodeErr := json.Unmarshal(raw, &env)
	env.raw = raw
	if resp.StatusCode >= 400 {
		e := &apiError{status: resp.StatusCode, message: strings.TrimSpace(string(raw))}
		if decodeErr == nil {
			e.message = env.Message
			var p struct{ Field, Problem string }
			if json.Unmarshal(env.Data, &p) == nil {
				e.field, e.problem = p.Field, p.Problem
			}
		}
		return &env, e
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("%s %s: %d answer is not the API's JSON: %.200s", method, path, resp.StatusCode, raw)
	}
	return &env, nil
}

// flags is a command's flag set; every command takes --json.
func (c *client) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by Run
	fs.BoolVar(&c.json, "json", false, "print the API's JSON as it came")
	return fs
}

// parse parses args, which may mix flags and positional arguments, and checks that exactly
// npos positional arguments remain (named in what, for the message).
func parse(fs *flag.FlagSet, args []string, what ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0]) // a positional argument; flags may follow it
		args = args[1:]
	}
	if len(pos) != len(what) {
		if len(what) == 0 {
			return nil, usagef("unexpected argument %q", pos[0])
		}
		return nil, usagef("want %s", strings.Join(what, " "))
	}
	return pos, nil
}

// print writes env as it came (--json), or calls table.
func (c *client) print(env *envelope, table func() error) error {
	if c.json {
		_, err := c.out.Write(append(bytes.TrimRight(env.raw, "\n"), '\n'))
		return err
	}
	return table()
}

// list is a repeatable string flag.
type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

// jsonFlag is a flag whose value must be JSON.
type jsonFlag struct{ raw json.RawMessage }

func (j *jsonFlag) String() string { return string(j.raw) }
func (j *jsonFlag) Set(s string) error {
	if !json.Valid([]byte(s)) {
		return errors.New("not valid JSON")
	}
	j.raw = json.RawMessage(s)
	return nil
}
