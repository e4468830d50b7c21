package service_test

import (
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/service"
	"github.com/hookline/hookline/pkg/service/servicetest"
)

// A backlog several times MaxAckPending drains completely: the consumers keep pulling as acks
// free slots, and one endpoint's surplus waits in JetStream rather than stalling anything.
func TestBacklogDrains(t *testing.T) {
	cfg := servicetest.NewConfig(t, nil)
	sys := servicetest.StartConfig(t, cfg, service.Tuning{DispatchMaxAckPending: 4096})
	nc := natsConn(t, sys)
	rv := servicetest.NewReceiver(t)
	w := sys.Register(t, 1, rv.URL, nil)
	publishMany(t, nc, "drain", 20000, 1, w.ID)
	servicetest.Eventually(t, 60*time.Second, "20,000 deliveries succeeded", func() bool {
		return sys.Count(t, "SELECT count(*) FROM delivery_states WHERE status = 'succeeded'") == 20000
	})
}
