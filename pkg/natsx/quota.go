package natsx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// QuotasBucket holds the ingress's per-key rate-limit buckets, shared by every ingress
// replica: one entry per API key (its hash, hex), the tokens left and when they were counted.
// An entry idle for the bucket's TTL ages out; the key's bucket is full again by then.
const QuotasBucket = "hookline-quotas"

// SetupQuotas creates the quotas bucket, or opens it as it is.
func SetupQuotas(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      QuotasBucket,
		Description: "per-key rate-limit token buckets shared by the ingress replicas",
		History:     1,
		TTL:         time.Minute, // longer than any bucket takes to refill (HOOKLINE_RATE_LIMIT is per second)
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, QuotasBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("set up key-value bucket %s: %w", QuotasBucket, err)
	}
	return kv, nil
}
