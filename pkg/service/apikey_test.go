package service

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/config"
	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/store/storetest"
)

// `apikey create` prints a key once and stores only its hash; `list` shows it; `revoke` ends
// it.
func TestAPIKeyCommand(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default(":0")
	cfg.DatabaseURL = storetest.NewURL(t)
	var out bytes.Buffer
	if err := apikeyCmd(ctx, cfg, []string{"create", "--user", "7", "--name", "ci"}, &out); err != nil {
		t.Fatalf("create: %v", err)
	}
	m := regexp.MustCompile(`id\t(\S+)\nkey\t(hl_\S+)\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("create printed %q", out.String())
	}
	id, key := uuid.MustParse(m[1]), m[2]
	db, err := store.Open(ctx, cfg.DatabaseURL, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k, err := store.LookupAPIKey(ctx, db, key)
	if err != nil || k.UserID != 7 || k.Admin || k.ID != id {
		t.Fatalf("lookup of the created key = %+v, %v", k, err)
	}
	var stored int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM api_keys WHERE position($1 in encode(key_hash, 'escape')) > 0", key).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the key is stored in clear (%d, %v)", stored, err)
	}
	out.Reset()
	if err := apikeyCmd(ctx, cfg, []string{"list"}, &out); err != nil || !strings.Contains(out.String(), id.String()) || strings.Contains(out.String(), key) {
		t.Fatalf("list = %q, %v: want the id and never the key", out.String(), err)
	}
	if err := apikeyCmd(ctx, cfg, []string{"revoke", id.String()}, &out); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := store.LookupAPIKey(ctx, db, key); !errors.Is(err, store.ErrNoKey) {
		t.Fatalf("lookup after revoke = %v, want ErrNoKey", err)
	}
	for _, bad := range [][]string{{"create"}, {"create", "--admin", "--user", "1"}, {"revoke", "nope"}, {"frob"}} {
		if err := apikeyCmd(ctx, cfg, bad, &out); err == nil {
			t.Errorf("apikey %v = nil error, want one", bad)
		}
	}
}
