// Package migrations holds Hookline's PostgreSQL schema as plain SQL up/down files, embedded
// for bun's migrator. Files are named YYYYMMDDHHMMSS_name.tx.up.sql / .tx.down.sql; each runs
// in its own transaction.
package migrations

import (
	"embed"

	"github.com/uptrace/bun/migrate"
)

//go:embed *.sql
var sqlFiles embed.FS

// Migrations is every migration of this package, discovered from the embedded files.
var Migrations = migrate.NewMigrations()

func init() {
	// Discover only fails on a misnamed embedded file, which is a build mistake, not a runtime
	// condition: the migrations test catches it.
	if err := Migrations.Discover(sqlFiles); err != nil {
		panic(err)
	}
}
