package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/event"
	"github.com/hookline/hookline/pkg/store"
)

// upload stores the file's bytes under a generated name, then publishes upload.completed for
// the webhook; it answers 200 only after JetStream acknowledged both.
func (a *API) upload(c *fiber.Ctx) error {
	ctx := c.UserContext()
	w, err := a.ownWebhook(c, "webhook_id")
	if err != nil {
		return err
	}
	typeID, err := store.EventTypeIDByName(ctx, a.db, event.UploadCompleted)
	if err != nil {
		return err
	}
	if !contains(w.EventTypeIDs, typeID) {
		return fieldError("webhook_id", "webhook is not subscribed to upload.completed")
	}
	if !w.Enabled {
		return fail(fiber.StatusConflict, "webhook is disabled")
	}
	// The body streams for as long as the server's ReadTimeout lets it, longer than the API's
	// requestTimeout: storing and publishing it get a bound of their own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), uploadTimeout)
	defer cancel()
	c.SetUserContext(ctx)
	fileID, err := uuid.NewV7()
	if err != nil {
		return err
	}
	// The file part goes to the store as it arrives: the hash is computed on the way, the
	// type sniffed from the first bytes when the client gave none, the bytes never held.
	var (
		fileName, contentType, sha string
		stored                     bool
	)
	size, err := a.receiveFile(c, func(p *multipart.Part, f io.Reader) error {
		head := make([]byte, 512)
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return err
		}
		head = head[:n]
		fileName, contentType = p.FileName(), p.Header.Get(fiber.HeaderContentType)
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt == "application/octet-stream" || contentType == "" {
			contentType = http.DetectContentType(head)
		}
		sum := sha256.New()
		stored = true // a failed Put may leave a partial object
		if err := a.blobs.Put(ctx, fileID.String(), io.TeeReader(io.MultiReader(bytes.NewReader(head), f), sum)); err != nil {
			return err
		}
		sha = hex.EncodeToString(sum.Sum(nil))
		return nil
	})
	if err != nil {
		if stored {
			if derr := a.blobs.Delete(context.WithoutCancel(ctx), fileID.String()); derr != nil {
				a.log.WarnContext(ctx, "delete of a failed upload", "file_id", fileID, "err", derr)
			}
		}
		return err
	}
	now := time.Now().UTC()
	eventID, err := uuid.NewV7()
	if err != nil {
		return err
	}
	out := event.Upload{FileID: fileID, EventID: eventID.String(), WebhookID: w.ID, FileName: SanitizeFileName(fileName),
		Size: size, ContentType: contentType, SHA256: sha}
	raw, err := event.EncodeUpload(out, now, a.opts.Links.URL(fileID, now))
	if err != nil {
		return err
	}
	if err := a.publish(c, event.Event{ID: eventID.String(), Type: event.UploadCompleted, UserID: w.UserID,
		WebhookID: &w.ID, OccurredAt: now, Data: raw}); err != nil {
		return err
	}
	a.log.InfoContext(ctx, "file uploaded", "file_id", fileID, "event_id", eventID, "webhook_id", w.ID, "size", size)
	return ok(c, "ok", out)
}

// publish sends an event to events.<type> with Nats-Msg-Id = its id and waits for the ack.
func (a *API) publish(c *fiber.Ctx, e event.Event) error {
	body, err := event.Encode(e)
	if err != nil {
		return err
	}
	if _, err := a.js.Publish(c.UserContext(), event.Subject(e.Type), body, jetstream.WithMsgID(e.ID)); err != nil {
		return fail(fiber.StatusServiceUnavailable, "event not accepted by JetStream, try again: "+err.Error())
	}
	a.m.EventsPublished.WithLabelValues(a.typeLabel(c.UserContext(), e.Type)).Inc()
	return nil
}

func contains(ids []uuid.UUID, id uuid.UUID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// SanitizeFileName keeps a client's file name as metadata only: the last path element, no
// control or separator characters, no leading dots, at most 255 bytes. The stored object's
// name is the generated file id, never this.
func SanitizeFileName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(name)
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), r == '/', r == '\\', r == ':',
			unicode.Is(unicode.Bidi_Control, r), r == '\u2028', r == '\u2029':
			b.WriteRune('_')
		default:
			b.WriteRune(r)
		}
	}
	name = strings.TrimLeft(strings.TrimSpace(b.String()), ".")
	for len(name) > 255 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return "upload"
	}
	return name
}
