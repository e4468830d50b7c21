package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/hookline/hookline/pkg/store"
)

// Links signs download URLs for uploaded files, so a receiver can fetch the bytes without an
// API key: HMAC-SHA256 of "file id.expiry" under a key only the ingress holds.
type Links struct {
	key  []byte
	base string
	ttl  time.Duration
}

// NewLinks signs with a key derived from secret (the encryption key, or the admin key), links
// rooted at baseURL (the API's public URL) and valid for ttl (default 24 h).
func NewLinks(secret []byte, baseURL string, ttl time.Duration) *Links {
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("hookline download links v1"))
	return &Links{key: mac.Sum(nil), base: strings.TrimRight(baseURL, "/"), ttl: ttl}
}

func (l *Links) sign(id string, expires int64) string {
	mac := hmac.New(sha256.New, l.key)
	mac.Write([]byte(id + "." + strconv.FormatInt(expires, 10)))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// URL is the signed download link of a file, valid for the links' ttl from now.
func (l *Links) URL(id uuid.UUID, now time.Time) string {
	exp := now.Add(l.ttl).Unix()
	return l.base + "/files/" + id.String() + "/content?expires=" + strconv.FormatInt(exp, 10) + "&signature=" + l.sign(id.String(), exp)
}

// errLink is what any bad link gets: expired, altered or for another file look the same.
var errLink = &Error{Status: fiber.StatusForbidden, Message: "download link expired or invalid"}

func (l *Links) check(id, expires, sig string, now time.Time) error {
	exp, err := strconv.ParseInt(expires, 10, 64)
	if err != nil || now.Unix() > exp {
		return errLink
	}
	if !hmac.Equal([]byte(sig), []byte(l.sign(id, exp))) {
		return errLink
	}
	return nil
}

// ownFile loads the path's file if p may see it; store.ErrNoFile otherwise.
func (a *API) ownFile(c *fiber.Ctx, p Principal) (store.File, error) {
	id, err := pathUUID(c, "id", store.ErrNoFile)
	if err != nil {
		return store.File{}, err
	}
	f, err := store.GetFile(c.UserContext(), a.db, id)
	if err == nil && !p.may(f.UserID) {
		err = store.ErrNoFile
	}
	if errors.Is(err, store.ErrNoFile) {
		return store.File{}, notFound(store.ErrNoFile, id.String())
	}
	return f, err
}

func (a *API) getFile(c *fiber.Ctx) error {
	f, err := a.ownFile(c, principal(c))
	if err != nil {
		return err
	}
	return ok(c, "ok", newFileJSON(f))
}

// fileContent serves the bytes to the owner's key, or to anyone holding a valid signed link.
func (a *API) fileContent(c *fiber.Ctx) error {
	var p Principal
	if sig := c.Query("signature"); sig != "" {
		if err := a.opts.Links.check(c.Params("id"), c.Query("expires"), sig, time.Now()); err != nil {
			return err
		}
		p = Principal{Admin: true} // the link names one file and was signed by us
	} else {
		var err error
		if p, err = a.resolveKey(c); err != nil {
			return err
		}
	}
	f, err := a.ownFile(c, p)
	if err != nil {
		return err
	}
	// The bytes are sent after this handler returns, when the request's deadline (deadline in
	// api.go) is already cancelled: the reader gets a context of its own, ended when fasthttp
	// closes the stream (sent, or the client gone). A slow reader is as slow as it likes, as
	// before that deadline existed.
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.UserContext()))
	r, err := a.blobs.Open(ctx, f.ObjectName)
	if err != nil {
		cancel()
		return fmt.Errorf("file %s: %w", f.ID, err) // blob.ErrNotFound: 404
	}
	r = closeAlso{r, cancel}
	c.Set(fiber.HeaderContentType, f.ContentType)
	c.Set(fiber.HeaderContentDisposition, `attachment; filename="`+strings.ReplaceAll(f.FileName, `"`, "_")+`"`)
	c.Set("X-Content-Type-Options", "nosniff")
	// fasthttp closes the reader when it has sent the body.
	return c.SendStream(r, int(f.Size))
}

// closeAlso is a reader that ends its context when it is closed.
type closeAlso struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c closeAlso) Close() error {
	defer c.cancel()
	return c.ReadCloser.Close()
}
