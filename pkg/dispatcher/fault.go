//go:build !chaos

package dispatcher

// fault marks a crash point of the fault-injection suite (pkg/chaostest). Only a build with
// `-tags chaos` acts on it (fault_chaos.go); this one, every production build, does nothing.
func fault(string) {}
