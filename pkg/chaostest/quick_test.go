package chaostest

import (
	"bytes"
	"os"
	"slices"
	"testing"
)

// TestChaosQuick is the part of the suite that `make test` runs (when HOOKLINE_CHAOS is unset;
// `make chaos` runs TestChaos whole): the dispatcher killed at its two crash points, 1,000
// events each, checked for correctness only (nothing lost, no row stuck, one success row per
// delivery), not for time, so a loaded machine does not fail it. It also checks that a
// dispatcher built without the chaos tag has no crash point.
func TestChaosQuick(t *testing.T) {
	if os.Getenv("HOOKLINE_CHAOS") != "" {
		t.Skip("make chaos runs TestChaos, which has these scenarios at full scale")
	}
	if testing.Short() {
		t.Skip("starts processes, a nats-server and a PostgreSQL cluster")
	}
	bins := buildBinaries(t)
	for name, want := range map[string]bool{"dispatcher": true, "dispatcher-production": false} {
		b, err := os.ReadFile(bins[name])
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(b, []byte("HOOKLINE_FAULT")); got != want {
			t.Fatalf("%s has the crash points: %t, want %t", name, got, want)
		}
	}
	runScale = 0.1
	defer func() { runScale = 1 }()
	quick := slices.DeleteFunc(scenarios(), func(sc scenario) bool { return sc.dispatcherEnv == nil })
	if len(quick) != 2 {
		t.Fatalf("%d scenarios with crash points, want 2", len(quick))
	}
	runScenarios(t, quick, false)
}
