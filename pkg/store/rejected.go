package store

import (
	"context"
	"fmt"
	"time"
)

// PruneRejected bounds rejected_events: it deletes the rows received before before (at most
// limit of them per call) and, when perUser > 0, every row of a user beyond that user's
// perUser newest (user 0 holds the rejections whose event did not decode). It returns how
// many rows went. A zero before keeps rows of any age.
func PruneRejected(ctx context.Context, db Querier, before time.Time, perUser, limit int) (int64, error) {
	var n int64
	if !before.IsZero() {
		res, err := db.ExecContext(ctx, `DELETE FROM rejected_events WHERE id IN
			(SELECT id FROM rejected_events WHERE received_at < $1 LIMIT $2)`, before, limit)
		if err != nil {
			return 0, fmt.Errorf("prune rejected events: %w", err)
		}
		n, _ = res.RowsAffected()
	}
	if perUser <= 0 {
		return n, nil
	}
	// The users over their cap, then for each the id of its perUser-th newest row (an index
	// walk on (user_id, id)); older rows of that user go.
	res, err := db.ExecContext(ctx, `WITH over AS (
			SELECT user_id FROM rejected_events GROUP BY user_id HAVING count(*) > $1
		), cut AS (
			SELECT o.user_id, (SELECT r.id FROM rejected_events r WHERE r.user_id = o.user_id
			                   ORDER BY r.id DESC OFFSET $1 - 1 LIMIT 1) AS id
			FROM over o
		)
		DELETE FROM rejected_events r USING cut WHERE r.user_id = cut.user_id AND r.id < cut.id`, perUser)
	if err != nil {
		return n, fmt.Errorf("cap rejected events per user: %w", err)
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}
