package service_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
	"github.com/hookline/hookline/pkg/store"
)

// userKey creates an API key for user and returns it.
func userKey(t *testing.T, sys *servicetest.System, user int64) string {
	t.Helper()
	key, err := service.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateAPIKey(context.Background(), sys.DB, key, user, false, "test"); err != nil {
		t.Fatal(err)
	}
	return key
}
