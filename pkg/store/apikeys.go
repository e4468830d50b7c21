package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// APIKey is a stored key: only its SHA-256 is kept, never the key.
type APIKey struct {
	ID        uuid.UUID
	UserID    int64 // 0 for an admin key
	Admin     bool
	Name      string
	CreatedAt time.Time
	RevokedAt *time.Time
}

// ErrNoKey reports a key that is unknown or revoked.
var ErrNoKey = errors.New("unknown or revoked api key")

// HashKey is how keys are stored and looked up. A key is 256 random bits, so a fast hash is
// as safe as a password hash here and costs microseconds.
func HashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// CreateAPIKey stores the hash of key for userID (0 with admin).
func CreateAPIKey(ctx context.Context, db Querier, key string, userID int64, admin bool, name string) (APIKey, error) {
	k := APIKey{UserID: userID, Admin: admin, Name: name}
	var user *int64
	if userID > 0 {
		user = &userID
	}
	err := db.QueryRowContext(ctx, `INSERT INTO api_keys (key_hash, user_id, admin, name) VALUES ($1, $2, $3, $4)
		RETURNING id, created_at`, HashKey(key), user, admin, name).Scan(&k.ID, &k.CreatedAt)
	if err != nil {
		return k, fmt.Errorf("create api key: %w", err)
	}
	return k, nil
}

// LookupAPIKey finds a live key by its hash; ErrNoKey when there is none.
func LookupAPIKey(ctx context.Context, db Querier, key string) (APIKey, error) {
	var (
		k    APIKey
		user sql.NullInt64
	)
	err := db.QueryRowContext(ctx, `SELECT id, user_id, admin, name, created_at FROM api_keys
		WHERE key_hash = $1 AND revoked_at IS NULL`, HashKey(key)).Scan(&k.ID, &user, &k.Admin, &k.Name, &k.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return k, ErrNoKey
	}
	if err != nil {
		return k, fmt.Errorf("look up api key: %w", err)
	}
	k.UserID = user.Int64
	return k, nil
}

// ListAPIKeys lists every key, newest first.
func ListAPIKeys(ctx context.Context, db Querier) ([]APIKey, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, user_id, admin, name, created_at, revoked_at FROM api_keys ORDER BY created_at DESC`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		var (
			k    APIKey
			user sql.NullInt64
		)
		if err := rows.Scan(&k.ID, &user, &k.Admin, &k.Name, &k.CreatedAt, &k.RevokedAt); err != nil {
			return nil, err
		}
		k.UserID = user.Int64
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeAPIKey revokes a key by id; ErrNoKey when no live key has that id.
func RevokeAPIKey(ctx context.Context, db Querier, id uuid.UUID) error {
	res, err := db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoKey
	}
	return nil
}
