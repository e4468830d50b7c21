package httpapi

import (
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/hookline/hookline/pkg/store"
	"github.com/hookline/hookline/pkg/webhook"
)

var deliveryStatuses = map[string]bool{"": true, "pending": true, "retrying": true, "succeeded": true, "failed": true}

func (a *API) listDeliveries(c *fiber.Ctx) error {
	w, err := a.ownWebhook(c, "id")
	if err != nil {
		return err
	}
	status := c.Query("status")
	if !deliveryStatuses[status] {
		return fieldError("status", "must be one of pending, retrying, succeeded, failed")
	}
	limit, cur, err := page(c)
	if err != nil {
		return err
	}
	pg, err := store.ListDeliveries(c.UserContext(), a.db, w.ID, status, limit, cur)
	if err != nil {
		return err
	}
	out := make([]deliveryJSON, 0, len(pg.Items))
	for _, d := range pg.Items {
		out = append(out, newDeliveryJSON(d))
	}
	return listed(c, out, pg.Next)
}

// ownDelivery loads the path's delivery if the key may see it and its webhook is not deleted;
// store.ErrNoDelivery otherwise.
func (a *API) ownDelivery(c *fiber.Ctx) (store.Delivery, error) {
	id, err := pathUUID(c, "id", store.ErrNoDelivery)
	if err != nil {
		return store.Delivery{}, err
	}
	d, err := store.GetDelivery(c.UserContext(), a.db, id)
	if err == nil && !principal(c).may(d.UserID) {
		err = store.ErrNoDelivery
	}
	if err == nil {
		// A deleted webhook's deliveries are gone with it.
		if _, err = store.GetWebhook(c.UserContext(), a.db, d.WebhookID); errors.Is(err, webhook.ErrNotFound) {
			err = store.ErrNoDelivery
		}
	}
	if errors.Is(err, store.ErrNoDelivery) {
		return store.Delivery{}, notFound(store.ErrNoDelivery, id.String())
	}
	return d, err
}

func (a *API) getDelivery(c *fiber.Ctx) error {
	d, err := a.ownDelivery(c)
	if err != nil {
		return err
	}
	return ok(c, "ok", newDeliveryDetailJSON(d))
}

// retryDelivery queues one new attempt of a failed delivery; store.ErrConflict (409) for any
// other status.
func (a *API) retryDelivery(c *fiber.Ctx) error {
	d, err := a.ownDelivery(c)
	if err != nil {
		return err
	}
	err = store.RetryDelivery(c.UserContext(), a.db, d.ID)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: only a failed delivery can be retried; this one is %s", err, d.Status)
	}
	if err != nil {
		return err
	}
	return accepted(c, "Retry queued", idJSON{d.ID.String()})
}
