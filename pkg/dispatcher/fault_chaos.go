//go:build chaos

package dispatcher

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

// In a build with `-tags chaos` only (make chaos builds the dispatcher so), HOOKLINE_FAULT
// names a crash point and HOOKLINE_FAULT_AT (default 1) how many times it is passed before the
// process kills itself with SIGKILL, with whatever it holds in flight:
//
//	after_post    a receiver has answered; the outcome is not committed yet
//	after_commit  a batch of outcomes is committed; their messages are not acked yet
var (
	faultPoint  = os.Getenv("HOOKLINE_FAULT")
	faultAt     = faultCount(os.Getenv("HOOKLINE_FAULT_AT"))
	faultPassed atomic.Int64
)

func faultCount(s string) int64 {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return n
	}
	return 1
}

func fault(point string) {
	if point != faultPoint || faultPassed.Add(1) < faultAt {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way: nothing more may happen here
}
