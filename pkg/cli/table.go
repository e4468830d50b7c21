package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

// object is one JSON object of an answer, numbers kept as written.
type object map[string]any

func decodeObject(raw json.RawMessage) (object, error) {
	var o object
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&o); err != nil {
		return nil, fmt.Errorf("answer's data is not an object: %w", err)
	}
	return o, nil
}

func decodeObjects(raw json.RawMessage) ([]object, error) {
	var os []object
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&os); err != nil {
		return nil, fmt.Errorf("answer's data is not a list: %w", err)
	}
	return os, nil
}

// cell is v as one table cell: "-" for null or empty, lists joined with commas, objects as
// compact JSON, every line break and tab flattened so a row stays one line.
func cell(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		s = x
	case json.Number:
		s = x.String()
	case bool:
		s = fmt.Sprint(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		s = strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(x)
		s = string(b)
	}
	if s == "" || s == "{}" {
		return "-"
	}
	return strings.NewReplacer("\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// table prints one row per object with the given columns (JSON names, shown in capitals).
func (c *client) table(columns []string, rows []object) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
	for _, o := range rows {
		cells := make([]string, len(columns))
		for i, col := range columns {
			cells[i] = cell(o[col])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// record prints one object as "field  value" lines, in the given order.
func (c *client) record(fields []string, o object) error {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		if v, ok := o[f]; ok {
			fmt.Fprintf(tw, "%s\t%s\n", f, cell(v))
		}
	}
	return tw.Flush()
}

// listing prints a page: the table, then how to get the next page when there is one.
func (c *client) listing(env *envelope, columns []string) error {
	return c.print(env, func() error {
		rows, err := decodeObjects(env.Data)
		if err != nil {
			return err
		}
		if err := c.table(columns, rows); err != nil {
			return err
		}
		if env.NextCursor != "" {
			fmt.Fprintf(c.out, "(more: --cursor %s)\n", env.NextCursor)
		}
		return nil
	})
}

// one prints a single object's fields.
func (c *client) one(env *envelope, fields []string) error {
	return c.print(env, func() error {
		o, err := decodeObject(env.Data)
		if err != nil {
			return err
		}
		return c.record(fields, o)
	})
}

// oneWithList prints a single object's fields, then its list under key (a delivery's attempts,
// an event's deliveries) as a table.
func (c *client) oneWithList(env *envelope, fields []string, key string, columns []string) error {
	return c.print(env, func() error {
		o, err := decodeObject(env.Data)
		if err != nil {
			return err
		}
		if err := c.record(fields, o); err != nil {
			return err
		}
		fmt.Fprintln(c.out)
		return c.table(columns, objects(o[key]))
	})
}
