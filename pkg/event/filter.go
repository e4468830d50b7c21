package event

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Filter is a webhook's payload filter: which events it receives. It is a JSON object whose
// keys are dot paths into the event (type, user_id, data.…) and whose values are a literal
// (equality) or an operator object ($eq $ne $gt $gte $lt $lte $in $nin $exists $contains); every
// key must hold. $or and $and take arrays of such objects. ParseFilter builds one; Match
// evaluates it against an event's Doc.
type Filter struct {
	conds []cond
}

type cond struct {
	path []string // nil for $or / $and
	ops  []op
	or   []*Filter // $or: any holds
	and  []*Filter // $and: all hold
}

type op struct {
	name string
	arg  any
}

// Limits of a filter.
const (
	MaxFilterBytes = 16 << 10
	maxFilterDepth = 8
)

var filterOps = map[string]bool{"$eq": true, "$ne": true, "$gt": true, "$gte": true, "$lt": true, "$lte": true,
	"$in": true, "$nin": true, "$exists": true, "$contains": true}

// ParseFilter reads a filter; the error is a *FieldError naming field, or the part of it at
// fault ("filter.data.amount").
func ParseFilter(field string, raw []byte) (*Filter, error) {
	if len(raw) > MaxFilterBytes {
		return nil, &FieldError{Field: field, Problem: "must be at most " + strconv.Itoa(MaxFilterBytes) + " bytes"}
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, &FieldError{Field: field, Problem: "must be a JSON object"}
	}
	return parseFilter(field, normalize(v), 0)
}

func parseFilter(field string, v any, depth int) (*Filter, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &FieldError{Field: field, Problem: "must be a JSON object of paths and conditions"}
	}
	if depth > maxFilterDepth {
		return nil, &FieldError{Field: field, Problem: "nests $or/$and more than " + strconv.Itoa(maxFilterDepth) + " deep"}
	}
	f := &Filter{}
	for _, key := range sortedKeys(obj) {
		val := obj[key]
		where := field + "." + key
		if key == "$or" || key == "$and" {
			arr, ok := val.([]any)
			if !ok || len(arr) == 0 {
				return nil, &FieldError{Field: where, Problem: "must be a non-empty array of filter objects"}
			}
			var subs []*Filter
			for i, x := range arr {
				sub, err := parseFilter(where+"["+strconv.Itoa(i)+"]", x, depth+1)
				if err != nil {
					return nil, err
				}
				subs = append(subs, sub)
			}
			if key == "$or" {
				f.conds = append(f.conds, cond{or: subs})
			} else {
				f.conds = append(f.conds, cond{and: subs})
			}
			continue
		}
		path := strings.Split(key, ".")
		if (path[0] != "type" && path[0] != "user_id" && path[0] != "data") || (path[0] != "data" && len(path) > 1) || slices.Contains(path, "") {
			return nil, &FieldError{Field: where, Problem: "a path must be type, user_id or data.<key>[.<key>…] (or $or / $and)"}
		}
		c := cond{path: path}
		if m, ok := val.(map[string]any); ok && len(m) > 0 && allOperators(m) {
			for _, name := range sortedKeys(m) {
				arg := m[name]
				if !filterOps[name] {
					return nil, &FieldError{Field: where + "." + name, Problem: "is not an operator (use $eq $ne $gt $gte $lt $lte $in $nin $exists $contains)"}
				}
				if err := checkArg(name, arg); err != nil {
					return nil, &FieldError{Field: where + "." + name, Problem: err.Error()}
				}
				c.ops = append(c.ops, op{name, arg})
			}
		} else if m, ok := val.(map[string]any); ok && anyOperator(m) {
			return nil, &FieldError{Field: where, Problem: "mixes operators ($…) with plain keys"}
		} else {
			c.ops = []op{{"$eq", val}}
		}
		f.conds = append(f.conds, c)
	}
	return f, nil
}

type argError string

func (e argError) Error() string { return string(e) }

func checkArg(name string, arg any) error {
	switch name {
	case "$gt", "$gte", "$lt", "$lte":
		switch arg.(type) {
		case float64, string:
			return nil
		}
		return argError("must be a number or a string")
	case "$in", "$nin":
		if _, ok := arg.([]any); !ok {
			return argError("must be an array")
		}
	case "$exists":
		if _, ok := arg.(bool); !ok {
			return argError("must be true or false")
		}
	}
	return nil
}

func allOperators(m map[string]any) bool {
	for k := range m {
		if !strings.HasPrefix(k, "$") {
			return false
		}
	}
	return true
}

func anyOperator(m map[string]any) bool {
	for k := range m {
		if strings.HasPrefix(k, "$") {
			return true
		}
	}
	return false
}

// Doc is an event as a filter sees it: {"type", "user_id", "data"}, decoded once per event.
type Doc map[string]any

// NewDoc decodes e for filters; nil when its data does not decode (it always does once
// Decode accepted the event).
func NewDoc(e Event) Doc {
	var data any
	if err := json.Unmarshal(e.Data, &data); err != nil {
		return nil
	}
	return Doc{"type": e.Type, "user_id": float64(e.UserID), "data": data}
}

// Match reports whether the event holds every condition of f.
func (f *Filter) Match(d Doc) bool {
	for _, c := range f.conds {
		if !c.match(d) {
			return false
		}
	}
	return true
}

func (c cond) match(d Doc) bool {
	switch {
	case c.or != nil:
		for _, f := range c.or {
			if f.Match(d) {
				return true
			}
		}
		return false
	case c.and != nil:
		for _, f := range c.and {
			if !f.Match(d) {
				return false
			}
		}
		return true
	}
	v, found := lookup(map[string]any(d), c.path)
	for _, o := range c.ops {
		if !o.holds(v, found) {
			return false
		}
	}
	return true
}

func lookup(v any, path []string) (any, bool) {
	for _, seg := range path {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func (o op) holds(v any, found bool) bool {
	switch o.name {
	case "$exists":
		return found == o.arg.(bool)
	case "$ne":
		return !found || !equal(v, o.arg)
	case "$nin":
		return !found || !in(v, o.arg.([]any))
	}
	if !found {
		return false
	}
	switch o.name {
	case "$eq":
		return equal(v, o.arg)
	case "$in":
		return in(v, o.arg.([]any))
	case "$contains":
		switch x := v.(type) {
		case string:
			s, ok := o.arg.(string)
			return ok && strings.Contains(x, s)
		case []any:
			return in(o.arg, x)
		}
		return false
	}
	c, ok := compare(v, o.arg)
	if !ok {
		return false
	}
	switch o.name {
	case "$gt":
		return c > 0
	case "$gte":
		return c >= 0
	case "$lt":
		return c < 0
	default: // $lte
		return c <= 0
	}
}

func in(v any, set []any) bool {
	for _, x := range set {
		if equal(v, x) {
			return true
		}
	}
	return false
}

// compare orders two numbers or two strings; ok is false for anything else.
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok || math.IsNaN(x) {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}

// equal is JSON equality: numbers by value, objects and arrays deeply.
func equal(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b // string, float64, bool, nil
}

// normalize turns json.Number into float64, as encoding/json decodes an event's data.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Filters caches parsed filters by their document's bytes. It is dropped whole past
// maxFilters entries.
type Filters struct {
	mu sync.Mutex
	m  map[string]*Filter
}

const maxFilters = 10_000

// Get returns raw parsed, from the cache when it was parsed before.
func (c *Filters) Get(raw []byte) (*Filter, error) {
	c.mu.Lock()
	f, ok := c.m[string(raw)]
	c.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := ParseFilter("filter", raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxFilters {
		c.m = map[string]*Filter{}
	}
	c.m[string(raw)] = f
	return f, nil
}
