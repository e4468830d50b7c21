// Package store is Hookline's PostgreSQL layer, over bun with pgdialect on the pgx stdlib
// driver. PostgreSQL is the system of record from the processor on; every write that the
// pipeline repeats on redelivery is idempotent (unique keys, ON CONFLICT DO NOTHING) and every
// state change is compare-and-set. Hot paths write in batches: one multi-row statement per
// table per batch, never one commit per row.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/migrate"

	"github.com/hookline/hookline/migrations"
)

// DB is a pool of connections to Hookline's database.
type DB struct {
	*bun.DB
}

// Querier runs SQL with parameters bound by the driver ($1, $2, …): *sql.DB, *sql.Tx and *DB.
// The batch statements pass Go slices as PostgreSQL arrays, which pgx binds natively; bun's
// own QueryContext would format ? placeholders into the text instead.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// ExecContext runs query on the pool with bound parameters (see Querier).
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.DB.DB.ExecContext(ctx, query, args...)
}

// QueryContext runs query on the pool with bound parameters (see Querier).
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.DB.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query on the pool with bound parameters (see Querier).
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return db.DB.DB.QueryRowContext(ctx, query, args...)
}

// Open connects to databaseURL with at most maxConns connections (0 = 16) and checks that the
// server answers.
func Open(ctx context.Context, databaseURL string, maxConns int) (*DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if maxConns <= 0 {
		maxConns = 16
	}
	sqldb := stdlib.OpenDB(*cfg)
	sqldb.SetMaxOpenConns(maxConns)
	sqldb.SetMaxIdleConns(maxConns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	db := &DB{bun.NewDB(sqldb, pgdialect.New())}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres at %s: %w", redact(databaseURL), err)
	}
	return db, nil
}

// EnsureDatabase creates the database named in databaseURL when it does not exist, connecting
// to the server's "postgres" database to do so. `make run` relies on it on a fresh machine.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return fmt.Errorf("connect to postgres at %s: %w", redact(databaseURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created by a racing process
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func redact(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// Migrator returns bun's migrator over Hookline's migrations. A migration is marked applied
// only once it succeeded, so a failed one runs again next time.
func (db *DB) Migrator() *migrate.Migrator {
	return migrate.NewMigrator(db.DB, migrations.Migrations, migrate.WithMarkAppliedOnSuccess(true))
}

// MigrateUp applies every pending migration under the migrator's lock, so replicas starting
// together apply each migration once. It returns the names applied.
func (db *DB) MigrateUp(ctx context.Context) ([]string, error) {
	m := db.Migrator()
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	if err := lockMigrations(ctx, m); err != nil {
		return nil, err
	}
	defer m.Unlock(context.WithoutCancel(ctx)) //nolint:errcheck // the lock row goes with the session's end anyway
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate up: %w", err)
	}
	return names(group), nil
}

// MigrateDown rolls back the last group of migrations and returns their names.
func (db *DB) MigrateDown(ctx context.Context) ([]string, error) {
	m := db.Migrator()
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	if err := lockMigrations(ctx, m); err != nil {
		return nil, err
	}
	defer m.Unlock(context.WithoutCancel(ctx)) //nolint:errcheck
	group, err := m.Rollback(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate down: %w", err)
	}
	return names(group), nil
}

// lockMigrations takes bun's lock, waiting for another process that holds it.
func lockMigrations(ctx context.Context, m *migrate.Migrator) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := m.Lock(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("take the migration lock (held by another process for 1m; if none runs, delete the row of bun_migration_locks): %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func names(g *migrate.MigrationGroup) []string {
	if g == nil {
		return nil
	}
	var out []string
	for _, m := range g.Migrations {
		out = append(out, m.Name)
	}
	return out
}

// MigrationStatus lists every migration with whether it is applied.
func (db *DB) MigrationStatus(ctx context.Context) (migrate.MigrationSlice, error) {
	m := db.Migrator()
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	return m.MigrationsWithStatus(ctx)
}
