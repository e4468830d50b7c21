package service

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hookline/hookline/pkg/config"
)

// NewAPIKey makes a key: "hl_" and 256 random bits, URL-safe base64.
func NewAPIKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "hl_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// bootstrapSecrets fills in, for the all-in-one, an admin key and an encryption key that the
// environment did not give: each made once and kept (mode 0600) in the data dir, so a restart
// finds the same ones and `make run` needs no set-up.
func bootstrapSecrets(cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("HOOKLINE_DATA_DIR=%q: %w", cfg.DataDir, err)
	}
	if cfg.AdminAPIKey == "" {
		path := filepath.Join(cfg.DataDir, "admin.key")
		key, created, err := keptSecret(path, NewAPIKey)
		if err != nil {
			return err
		}
		cfg.AdminAPIKey = key
		if created {
			log.Warn("HOOKLINE_ADMIN_API_KEY unset: created an admin key", "path", path)
		} else {
			log.Info("using the admin key kept in the data dir", "path", path)
		}
	}
	if cfg.EncryptionKey == nil {
		path := filepath.Join(cfg.DataDir, "encryption.key")
		key, created, err := keptSecret(path, func() (string, error) {
			b := make([]byte, 32)
			_, err := rand.Read(b)
			return base64.StdEncoding.EncodeToString(b), err
		})
		if err != nil {
			return err
		}
		raw, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(raw) != 32 {
			return fmt.Errorf("%s: not the base64 of 32 bytes; remove it only if no webhook secret was stored with it", path)
		}
		cfg.EncryptionKey = raw
		if created {
			log.Warn("HOOKLINE_ENCRYPTION_KEY unset: created one; back it up, secrets cannot be read without it", "path", path)
		}
	}
	return nil
}

// keptSecret reads path, or creates it with make()'s value when missing.
func keptSecret(path string, make func() (string, error)) (string, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	v, err := make()
	if err != nil {
		return "", false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteString(v + "\n"); err != nil {
		return "", false, err
	}
	return v, true, f.Sync()
}
