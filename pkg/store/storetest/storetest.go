// Package storetest gives each test its own PostgreSQL database, cloned from a template that
// is migrated once per test process. It connects as HOOKLINE_TEST_DATABASE_URL says (default
// postgres@127.0.0.1:5432), never touches the `hookline` database, and drops databases left
// behind by test processes that died.
package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hookline/hookline/pkg/store"
)

// DefaultURL is the server the tests use unless HOOKLINE_TEST_DATABASE_URL says otherwise.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const prefix = "hookline_test_"

var (
	once     sync.Once
	template string
	initErr  error
	counter  atomic.Int64
)

func serverURL() string {
	if u := os.Getenv("HOOKLINE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// withDB returns the server URL pointed at database name.
func withDB(name string) string {
	u, _ := url.Parse(serverURL())
	u.Path = "/" + name
	return u.String()
}

// New returns an open pool (at most 4 connections) on a fresh, migrated database that is
// dropped when the test ends.
func New(tb testing.TB) *store.DB {
	tb.Helper()
	dbURL := NewURL(tb)
	db, err := store.Open(context.Background(), dbURL, 4)
	if err != nil {
		tb.Fatalf("storetest: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// NewURL creates a fresh, migrated database and returns its URL; it is dropped when the test
// ends. Use it to run a whole service against its own database.
func NewURL(tb testing.TB) string {
	tb.Helper()
	once.Do(func() { template, initErr = makeTemplate() })
	if initErr != nil {
		tb.Fatalf("storetest: %v\n(is PostgreSQL running? start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", initErr)
	}
	name := fmt.Sprintf("%s%d_%d", prefix, os.Getpid(), counter.Add(1))
	ctx := context.Background()
	if err := admin(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template))
		return err
	}); err != nil {
		tb.Fatalf("storetest: create %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_ = admin(ctx, func(c *pgx.Conn) error {
			_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			return err
		})
	})
	return withDB(name)
}

func admin(ctx context.Context, f func(*pgx.Conn) error) error {
	c, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return f(c)
}

// makeTemplate drops stale test databases, then creates and migrates this process's template.
func makeTemplate() (string, error) {
	ctx := context.Background()
	name := fmt.Sprintf("%stpl_%d", prefix, os.Getpid())
	err := admin(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE 'hookline_test_%'")
		if err != nil {
			return err
		}
		var stale []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			if !ownerAlive(n) {
				stale = append(stale, n)
			}
		}
		rows.Close()
		for _, n := range stale {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
		}
		_, err = c.Exec(ctx, "CREATE DATABASE "+name)
		return err
	})
	if err != nil {
		return "", err
	}
	db, err := store.Open(ctx, withDB(name), 2)
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.MigrateUp(ctx); err != nil {
		return "", err
	}
	return name, nil
}

// ownerAlive reports whether the test process that created database n still runs.
func ownerAlive(n string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(n, prefix), "tpl_")
	pid, err := strconv.Atoi(strings.SplitN(rest, "_", 2)[0])
	if err != nil {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	return syscall.Kill(pid, 0) == nil
}
