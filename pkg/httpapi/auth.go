package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"

	"github.com/hookline/hookline/pkg/store"
)

// Principal is who a request acts for: one user, or an admin who sees everything.
type Principal struct {
	UserID int64
	Admin  bool
	key    string // the key's hash, for the rate limiter
}

// may reports whether the principal may act for userID.
func (p Principal) may(userID int64) bool { return p.Admin || p.UserID == userID }

const principalKey = "principal"

func principal(c *fiber.Ctx) Principal {
	p, _ := c.Locals(principalKey).(Principal)
	return p
}

// keyCache remembers lookups for a few seconds, so a request costs a map read rather than a
// query; a revoked key stops working within keyTTL.
type keyCache struct {
	mu sync.Mutex
	m  map[string]cachedKey
}

type cachedKey struct {
	p       Principal
	ok      bool
	expires time.Time
}

const keyTTL = 5 * time.Second

// authenticate resolves the Bearer key: the bootstrap admin key, or a key in api_keys.
// Missing or unknown: 401.
func (a *API) authenticate(c *fiber.Ctx) error {
	p, err := a.resolveKey(c)
	if err != nil {
		return err
	}
	c.Locals(principalKey, p)
	return c.Next()
}

func (a *API) resolveKey(c *fiber.Ctx) (Principal, error) {
	h := c.Get(fiber.HeaderAuthorization)
	key, found := strings.CutPrefix(h, "Bearer ")
	key = strings.TrimSpace(key)
	if !found || key == "" {
		return Principal{}, fail(fiber.StatusUnauthorized, "missing API key: send Authorization: Bearer <key>")
	}
	hash := string(store.HashKey(key))
	if a.opts.AdminKey != "" && subtle.ConstantTimeCompare(store.HashKey(a.opts.AdminKey), []byte(hash)) == 1 {
		return Principal{Admin: true, key: hash}, nil
	}
	now := time.Now()
	a.keys.mu.Lock()
	ck, hit := a.keys.m[hash]
	a.keys.mu.Unlock()
	if !hit || now.After(ck.expires) {
		k, err := lookupKey(c.UserContext(), a.db, key, hit)
		switch {
		case hit && store.IsUnavailable(err):
			// PostgreSQL away: the key as last seen keeps working for another keyTTL (POST
			// /events goes on into JetStream); a revoke needs PostgreSQL anyway.
			ck.expires = now.Add(keyTTL)
		case errors.Is(err, store.ErrNoKey):
			ck = cachedKey{expires: now.Add(keyTTL)}
		case err != nil:
			return Principal{}, err
		default:
			ck = cachedKey{p: Principal{UserID: k.UserID, Admin: k.Admin, key: hash}, ok: true, expires: now.Add(keyTTL)}
		}
		a.keys.mu.Lock()
		if len(a.keys.m) > 100_000 { // bounded: random keys must not grow it forever
			a.keys.m = map[string]cachedKey{}
		}
		a.keys.m[hash] = ck
		a.keys.mu.Unlock()
	}
	if !ck.ok {
		return Principal{}, store.ErrNoKey // 401
	}
	if !ck.p.Admin && a.opts.RateLimit > 0 && !a.allow(c.UserContext(), hash) {
		return Principal{}, fail(fiber.StatusTooManyRequests, "rate limit of "+itoa(a.opts.RateLimit)+" requests per second for this key exceeded")
	}
	return ck.p, nil
}

// staleLookup bounds the lookup of a key (or schema) already cached: if PostgreSQL does not
// answer within it, the cached entry is used (see resolveKey).
const staleLookup = 3 * time.Second

func lookupKey(ctx context.Context, db store.Querier, key string, cached bool) (store.APIKey, error) {
	if cached {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, staleLookup)
		defer cancel()
	}
	return store.LookupAPIKey(ctx, db, key)
}

// adminOnly refuses user keys: 403.
func adminOnly(c *fiber.Ctx) error {
	if !principal(c).Admin {
		return fail(fiber.StatusForbidden, "this route needs an admin key")
	}
	return c.Next()
}

func (a *API) limiter(hash string) *rate.Limiter {
	a.limitMu.Lock()
	defer a.limitMu.Unlock()
	l, ok := a.limits[hash]
	if !ok {
		if len(a.limits) > 100_000 {
			a.limits = map[string]*rate.Limiter{}
		}
		l = rate.NewLimiter(rate.Limit(a.opts.RateLimit), a.opts.RateLimit)
		a.limits[hash] = l
	}
	return l
}

// forUser checks that the principal may act for userID: 403 otherwise.
func forUser(c *fiber.Ctx, userID int64) error {
	if !principal(c).may(userID) {
		return fail(fiber.StatusForbidden, "this API key may not act for user_id "+itoa(int(userID)))
	}
	return nil
}
