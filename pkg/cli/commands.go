package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

var (
	eventTypeColumns  = []string{"id", "name", "description"}
	webhookColumns    = []string{"id", "user_id", "url", "enabled", "event_type_ids", "disabled_reason", "created_at"}
	webhookFields     = []string{"id", "user_id", "url", "event_type_ids", "enabled", "disabled_reason", "disabled_at", "custom_headers", "custom_payload", "filter", "rate_limit", "max_concurrency", "timeout_ms", "ordering", "created_at", "updated_at", "secret"}
	deliveryColumns   = []string{"id", "event_id", "event_type", "status", "attempt_count", "last_status_code", "next_attempt_at", "created_at"}
	deliveryFields    = []string{"id", "webhook_id", "event_id", "event_type", "status", "attempt_count", "last_status_code", "next_attempt_at", "created_at", "updated_at"}
	attemptColumns    = []string{"attempt", "status_code", "latency_ms", "error", "created_at", "response_excerpt"}
	eventColumns      = []string{"id", "type", "user_id", "occurred_at", "received_at"}
	eventFields       = []string{"id", "type", "user_id", "occurred_at", "received_at", "data"}
	eventDeliveryCols = []string{"id", "webhook_id", "status"}
)

func eventTypes(c *client, args []string) error {
	if len(args) == 0 {
		return usagef("want list or create")
	}
	switch args[0] {
	case "list":
		if _, err := parse(c.flags("list"), args[1:]); err != nil {
			return err
		}
		env, err := c.do(http.MethodGet, "/event_type", nil, nil)
		if err != nil {
			return err
		}
		return c.listing(env, eventTypeColumns)
	case "create":
		fs := c.flags("create")
		name := fs.String("name", "", "the event type's name, e.g. invoice.paid")
		desc := fs.String("description", "", "what it means")
		var schema jsonFlag
		fs.Var(&schema, "schema", "a JSON Schema its data must match")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *name == "" {
			return usagef("--name is required")
		}
		body := map[string]any{"name": *name, "description": *desc}
		if schema.raw != nil {
			body["schema"] = schema.raw
		}
		env, err := c.do(http.MethodPost, "/event_type", nil, body)
		if err != nil {
			return err
		}
		return c.one(env, []string{"id", "name", "description", "schema"})
	}
	return usagef("unknown subcommand %q: want list or create", args[0])
}

func webhooks(c *client, args []string) error {
	if len(args) == 0 {
		return usagef("want list, get, create, update, delete or rotate-secret")
	}
	switch args[0] {
	case "list":
		fs := c.flags("list")
		q := pageFlags(fs)
		user := fs.String("user-id", "", "one user's webhooks (admin key)")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		query := q.values()
		setIf(query, "user_id", *user)
		env, err := c.do(http.MethodGet, "/webhooks", query, nil)
		if err != nil {
			return err
		}
		return c.listing(env, webhookColumns)
	case "get", "delete", "rotate-secret":
		pos, err := parse(c.flags(args[0]), args[1:], "WEBHOOK_ID")
		if err != nil {
			return err
		}
		path := "/webhook/" + url.PathEscape(pos[0])
		var env *envelope
		switch args[0] {
		case "get":
			env, err = c.do(http.MethodGet, path, nil, nil)
		case "delete":
			env, err = c.do(http.MethodDelete, path, nil, nil)
		default:
			env, err = c.do(http.MethodPost, path+"/rotate-secret", nil, nil)
		}
		if err != nil {
			return err
		}
		if args[0] == "rotate-secret" {
			return c.one(env, []string{"id", "secret", "previous_secret_expires_at"})
		}
		return c.one(env, webhookFields)
	case "create", "update":
		fs := c.flags(args[0])
		user := fs.Int64("user-id", 0, "the user the webhook belongs to (create)")
		u := fs.String("url", "", "where deliveries are POSTed")
		var types, headers list
		fs.Var(&types, "event-type", "an event type it subscribes to, by name or id (repeat)")
		fs.Var(&headers, "header", "a custom header K=V sent with each delivery (repeat)")
		enabled := fs.String("enabled", "", "true or false (update)")
		var extra jsonFlag
		fs.Var(&extra, "body", "more fields of the request body, as a JSON object")
		want := []string{}
		if args[0] == "update" {
			want = []string{"WEBHOOK_ID"}
		}
		pos, err := parse(fs, args[1:], want...)
		if err != nil {
			return err
		}
		body := map[string]any{}
		if extra.raw != nil {
			if err := json.Unmarshal(extra.raw, &body); err != nil {
				return usagef("--body: want a JSON object")
			}
		}
		if args[0] == "create" {
			if *user <= 0 || *u == "" || len(types) == 0 {
				return usagef("--user-id, --url and at least one --event-type are required")
			}
			body["user_id"] = *user
		}
		if *u != "" {
			body["url"] = *u
		}
		if len(headers) > 0 {
			h := map[string]string{}
			for _, kv := range headers {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("--header %q: want NAME=VALUE", kv)
				}
				h[k] = v
			}
			body["custom_headers"] = h
		}
		switch *enabled {
		case "":
		case "true", "false":
			body["enabled"] = *enabled == "true"
		default:
			return usagef("--enabled: want true or false")
		}
		if len(types) > 0 {
			ids, err := c.eventTypeIDs(types)
			if err != nil {
				return err
			}
			body["event_type_ids"] = ids
		}
		var env *envelope
		if args[0] == "create" {
			env, err = c.do(http.MethodPost, "/webhook/register", nil, body)
		} else {
			env, err = c.do(http.MethodPatch, "/webhook/"+url.PathEscape(pos[0]), nil, body)
		}
		if err != nil {
			return err
		}
		return c.one(env, webhookFields)
	}
	return usagef("unknown subcommand %q: want list, get, create, update, delete or rotate-secret", args[0])
}

// eventTypeIDs turns names into ids (one GET /event_type when any is a name); ids pass as they are.
func (c *client) eventTypeIDs(given []string) ([]string, error) {
	var byName map[string]string
	out := make([]string, 0, len(given))
	for _, g := range given {
		if _, err := uuid.Parse(g); err == nil {
			out = append(out, g)
			continue
		}
		if byName == nil {
			env, err := c.do(http.MethodGet, "/event_type", nil, nil)
			if err != nil {
				return nil, err
			}
			var ts []struct{ ID, Name string }
			if err := json.Unmarshal(env.Data, &ts); err != nil {
				return nil, fmt.Errorf("event types: %w", err)
			}
			byName = map[string]string{}
			for _, t := range ts {
				byName[t.Name] = t.ID
			}
		}
		id, ok := byName[g]
		if !ok {
			return nil, usagef("--event-type %q: no event type has that name (hookline event-types list)", g)
		}
		out = append(out, id)
	}
	return out, nil
}

func deliveries(c *client, args []string) error {
	if len(args) == 0 {
		return usagef("want list, get or retry")
	}
	switch args[0] {
	case "list":
		fs := c.flags("list")
		q := pageFlags(fs)
		status := fs.String("status", "", "pending, retrying, succeeded or failed")
		pos, err := parse(fs, args[1:], "WEBHOOK_ID")
		if err != nil {
			return err
		}
		query := q.values()
		setIf(query, "status", *status)
		env, err := c.do(http.MethodGet, "/webhook/"+url.PathEscape(pos[0])+"/deliveries", query, nil)
		if err != nil {
			return err
		}
		return c.listing(env, deliveryColumns)
	case "get":
		pos, err := parse(c.flags("get"), args[1:], "DELIVERY_ID")
		if err != nil {
			return err
		}
		env, err := c.do(http.MethodGet, "/deliveries/"+url.PathEscape(pos[0]), nil, nil)
		if err != nil {
			return err
		}
		return c.oneWithList(env, deliveryFields, "attempts", attemptColumns)
	case "retry":
		pos, err := parse(c.flags("retry"), args[1:], "DELIVERY_ID")
		if err != nil {
			return err
		}
		env, err := c.do(http.MethodPost, "/deliveries/"+url.PathEscape(pos[0])+"/retry", nil, nil)
		if err != nil {
			return err
		}
		return c.print(env, func() error {
			_, err := fmt.Fprintf(c.out, "%s: %s\n", env.Message, pos[0])
			return err
		})
	}
	return usagef("unknown subcommand %q: want list, get or retry", args[0])
}

func events(c *client, args []string) error {
	if len(args) == 0 {
		return usagef("want send, get or list")
	}
	switch args[0] {
	case "send":
		fs := c.flags("send")
		typ := fs.String("type", "", "the event type's name")
		user := fs.Int64("user-id", 0, "the user whose webhooks get it")
		id := fs.String("id", "", "the event's id (default: a new UUID); a repeat is deduplicated")
		hook := fs.String("webhook-id", "", "only this webhook of the user")
		var data jsonFlag
		fs.Var(&data, "data", "the event's data, a JSON object")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		if *typ == "" || *user <= 0 || data.raw == nil {
			return usagef("--type, --user-id and --data are required")
		}
		body := map[string]any{"type": *typ, "user_id": *user, "data": data.raw}
		if *id != "" {
			body["id"] = *id
		}
		if *hook != "" {
			body["webhook_id"] = *hook
		}
		env, err := c.do(http.MethodPost, "/events", nil, body)
		if err != nil {
			return err
		}
		return c.one(env, []string{"id", "duplicate"})
	case "get":
		fs := c.flags("get")
		user := fs.String("user-id", "", "the user who sent it (admin key, when several users used the id)")
		pos, err := parse(fs, args[1:], "EVENT_ID")
		if err != nil {
			return err
		}
		query := url.Values{}
		setIf(query, "user_id", *user)
		env, err := c.do(http.MethodGet, "/events/"+url.PathEscape(pos[0]), query, nil)
		if err != nil {
			return err
		}
		return c.oneWithList(env, eventFields, "deliveries", eventDeliveryCols)
	case "list":
		fs := c.flags("list")
		q := pageFlags(fs)
		typ := fs.String("type", "", "one event type")
		user := fs.String("user-id", "", "one user (admin key)")
		since := fs.String("since", "", "received at or after (YYYY-MM-DD HH:MM:SS UTC or RFC3339)")
		until := fs.String("until", "", "received before")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		query := q.values()
		setIf(query, "type", *typ)
		setIf(query, "user_id", *user)
		setIf(query, "since", *since)
		setIf(query, "until", *until)
		env, err := c.do(http.MethodGet, "/events", query, nil)
		if err != nil {
			return err
		}
		return c.listing(env, eventColumns)
	}
	return usagef("unknown subcommand %q: want send, get or list", args[0])
}

// paging are the --limit and --cursor flags of a listing.
type paging struct {
	limit  *int
	cursor *string
}

func pageFlags(fs interface {
	Int(string, int, string) *int
	String(string, string, string) *string
}) paging {
	return paging{fs.Int("limit", 0, "items per page (API default 50)"), fs.String("cursor", "", "the next page, from the previous one")}
}

func (p paging) values() url.Values {
	q := url.Values{}
	if *p.limit > 0 {
		q.Set("limit", strconv.Itoa(*p.limit))
	}
	setIf(q, "cursor", *p.cursor)
	return q
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

// objects is a decoded JSON list of objects (nil for anything else).
func objects(v any) []object {
	list, _ := v.([]any)
	out := make([]object, 0, len(list))
	for _, e := range list {
		if o, ok := e.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}
