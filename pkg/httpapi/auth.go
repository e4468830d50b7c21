package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
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
	ck, hit := a.keys.known(hash)
	if !hit || now.After(ck.expires) {
		if !hit {
			// Not a key known here: one seen unknown lately costs no query, and an address past
			// its budget of lookups that found nothing gets a 429 instead of one (keycache.go).
			addr := c.Context().RemoteIP().String()
			if a.keys.isUnknown(hash, now) {
				return Principal{}, store.ErrNoKey // a repeat costs nothing: not counted
			}
			if a.keys.budget(addr).TokensAt(now) < 1 {
				return Principal{}, tooManyUnknownKeys
			}
		}
		a.keys.lookups.Add(1)
		k, err := lookupKey(c.UserContext(), a.db, key, hit)
		switch {
		case hit && store.IsUnavailable(err):
			// PostgreSQL away: the key as last seen keeps working for another keyTTL (POST
			// /events goes on into JetStream); a revoke needs PostgreSQL anyway.
			ck.expires = now.Add(keyTTL)
		case errors.Is(err, store.ErrNoKey): // unknown, or revoked since it was cached
			a.keys.forget(hash, now)
			a.keys.budget(c.Context().RemoteIP().String()).Allow() // one of the address's lookups
			return Principal{}, store.ErrNoKey
		case err != nil:
			return Principal{}, err
		default:
			ck = cachedKey{p: Principal{UserID: k.UserID, Admin: k.Admin, key: hash}, ok: true, expires: now.Add(keyTTL)}
		}
		a.keys.remember(hash, ck)
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

// tooManyUnknownKeys is the 429 of a client address past its budget of unknown keys.
var tooManyUnknownKeys = &Error{Status: fiber.StatusTooManyRequests,
	Message: "too many requests with unknown API keys from this address, try again later"}

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
