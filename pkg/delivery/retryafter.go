package delivery

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// httpDateLayouts are the HTTP-date forms of RFC 9110 §5.6.7 that
// recipients must accept: IMF-fixdate, then the obsolete RFC 850 and
// asctime forms.
var httpDateLayouts = [...]string{
	"Mon, 02 Jan 2006 15:04:05 GMT",
	"Monday, 02-Jan-06 15:04:05 GMT",
	"Mon Jan _2 15:04:05 2006",
}

// RetryAfter parses a Retry-After header value (RFC 9110 §10.2.3): either
// delta-seconds ("120") or an HTTP date, taken relative to now. ok is false
// when v is empty, unparsable, or a date before now. A delta too large for
// a time.Duration saturates; callers cap it anyway.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			return math.MaxInt64, true // only a range error can get here
		}
		return time.Duration(secs) * time.Second, true
	}
	for _, layout := range httpDateLayouts {
		t, err := time.Parse(layout, v)
		if err != nil {
			continue
		}
		d := t.Sub(now)
		if d < 0 {
			return 0, false
		}
		return d, true
	}
	return 0, false
}

// isDigits reports whether s is one or more ASCII digits: delta-seconds
// has no sign, so "-5" and "+5" are not delays.
func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
