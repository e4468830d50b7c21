package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/cli"
	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/store"
)

// Main is a service binary's whole main: it reads the environment and runs role until SIGINT
// or SIGTERM. Subcommands: `healthcheck` (GET /readyz on HOOKLINE_HTTP_ADDR, exit 0 or 1, for
// container health checks without curl) and, for the all-in-one, `migrate up|down|status` and
// the API client's commands (package cli: `webhooks list`, `tail`, …; HOOKLINE_URL and
// HOOKLINE_API_KEY, not the server's settings).
func Main(role Role) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if role == AllInOne && len(os.Args) > 1 && cli.Is(os.Args[1]) {
		code := cli.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		osExit(code)
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	if err := run(ctx, log, role, os.Args[1:], os.Getenv); err != nil {
		log.Error(role.String()+" stopped", "err", err)
		stop()
		osExit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, role Role, args []string, getenv func(string) string) error {
	cfg, err := config.Load(getenv, role.DefaultAddr())
	if err != nil {
		return err // one line per bad variable, naming it
	}
	if len(args) == 0 || args[0] == "run" {
		return Run(ctx, log, cfg, role, Tuning{})
	}
	switch args[0] {
	case "healthcheck":
		return healthcheck(ctx, cfg.HTTPAddr)
	case "migrate":
		return migrateCmd(ctx, log, cfg, args[1:])
	case "apikey":
		return apikeyCmd(ctx, cfg, args[1:], os.Stdout)
	}
	return fmt.Errorf("unknown command %q (want run, healthcheck, migrate up|down|status or apikey create|list|revoke; `hookline help` lists the API client's commands)", strings.Join(args, " "))
}

func healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", resp.StatusCode)
	}
	return nil
}

func migrateCmd(ctx context.Context, log *slog.Logger, cfg config.Config, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: migrate up|down|status")
	}
	if args[0] == "up" {
		if err := store.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return err
		}
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "up":
		names, err := db.MigrateUp(ctx)
		if err != nil {
			return err
		}
		log.Info("migrated up", "applied", names)
	case "down":
		names, err := db.MigrateDown(ctx)
		if err != nil {
			return err
		}
		log.Info("migrated down", "rolled_back", names)
	case "status":
		ms, err := db.MigrationStatus(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			state := "pending"
			if m.IsApplied() {
				state = "applied"
			}
			fmt.Printf("%s\t%s\n", m.Name, state)
		}
	default:
		return fmt.Errorf("usage: migrate up|down|status")
	}
	return nil
}

const apikeyUsage = "usage: apikey create (--user N | --admin) [--name NAME] | apikey list | apikey revoke ID"

// apikeyCmd creates, lists and revokes API keys. A created key is printed once; only its hash
// is stored.
func apikeyCmd(ctx context.Context, cfg config.Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(apikeyUsage)
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "create":
		fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
		user := fs.Int64("user", 0, "the user_id the key acts for")
		admin := fs.Bool("admin", false, "an admin key (sees every user)")
		name := fs.String("name", "", "a label for the key")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *admin == (*user > 0) {
			return errors.New("apikey create: give exactly one of --user N (N > 0) or --admin")
		}
		key, err := NewAPIKey()
		if err != nil {
			return err
		}
		k, err := store.CreateAPIKey(ctx, db, key, *user, *admin, *name)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "id\t%s\nkey\t%s\n(the key is shown only now; only its hash is stored)\n", k.ID, key)
	case "list":
		keys, err := store.ListAPIKeys(ctx, db)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "id\tuser_id\tadmin\tname\tcreated_at\trevoked_at")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.UTC().Format(time.DateTime)
			}
			fmt.Fprintf(out, "%s\t%d\t%t\t%s\t%s\t%s\n", k.ID, k.UserID, k.Admin, k.Name, k.CreatedAt.UTC().Format(time.DateTime), revoked)
		}
	case "revoke":
		if len(args) != 2 {
			return errors.New(apikeyUsage)
		}
		id, err := uuid.Parse(args[1])
		if err != nil {
			return fmt.Errorf("apikey revoke: %q is not a key id", args[1])
		}
		if err := store.RevokeAPIKey(ctx, db, id); err != nil {
			return err
		}
		fmt.Fprintf(out, "revoked %s\n", id)
	default:
		return errors.New(apikeyUsage)
	}
	return nil
}
