package store

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable reports that PostgreSQL could not be reached or dropped the connection: the
// request may succeed later. The API answers it with 503 and Retry-After (IsUnavailable).
var ErrUnavailable = errors.New("the database is unavailable")

// IsUnavailable reports an error that says PostgreSQL is away rather than that the request is
// wrong: ErrUnavailable, a failed connect, a broken or refused connection, a network error,
// SQLSTATE class 08 (connection exception), 57P01–57P03 (the server shutting down or
// starting) and 53300 (too many connections).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var (
		ce  *pgconn.ConnectError
		pe  *pgconn.PgError
		ne  net.Error
		ope *net.OpError
	)
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &ce), errors.As(err, &ne), errors.As(err, &ope):
		return true
	case errors.As(err, &pe):
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "53300"
	}
	return false
}
