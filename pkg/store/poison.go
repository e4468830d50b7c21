package store

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsDataError reports an error PostgreSQL raised because of what a row holds, not because the
// server is away: SQLSTATE class 22 (data exception: a NUL in text, an untranslatable
// character, a value out of range) or 23 (integrity constraint violation). Retrying the same
// rows can never succeed, so the writers split the batch instead (Split).
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")
}

// Split writes items with write. When PostgreSQL refuses the batch for one row's data
// (IsDataError), it halves the batch until it has found the rows refused, hands each to bad
// with the error, and writes the rest: one poison row costs about 2·log2(n) statements instead
// of wedging the consumer. Any other error is returned at once, and the caller retries the
// whole batch later (a batch half written is harmless: every write is idempotent).
func Split[T any](items []T, write func([]T) error, bad func(T, error)) error {
	if len(items) == 0 {
		return nil
	}
	err := write(items)
	switch {
	case err == nil:
		return nil
	case !IsDataError(err):
		return err
	case len(items) == 1:
		bad(items[0], err)
		return nil
	}
	half := len(items) / 2
	if err := Split(items[:half], write, bad); err != nil {
		return err
	}
	return Split(items[half:], write, bad)
}

// CleanText makes s storable as PostgreSQL text: valid UTF-8 (invalid bytes become U+FFFD)
// without NUL (dropped). Hookline writes every text it composes (errors, response excerpts,
// reasons, subjects) through it.
func CleanText(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	return s
}

// DataErrorText is a short, storable description of a data error, for a rejection reason or
// an attempt's error.
func DataErrorText(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return CleanText("PostgreSQL refused the row (SQLSTATE " + pe.Code + "): " + pe.Message)
	}
	return CleanText(err.Error())
}
