package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// RepoRoot is the directory of the go.work file this process runs under.
func RepoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "off" {
		return "", fmt.Errorf("go env GOWORK: %v (run inside the repository)", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

var (
	natsOnce sync.Once
	natsBin  string
	natsErr  error
)

// NATSServerBinary returns a nats-server binary of the version pkg/go.mod requires, built once
// into the user's cache directory (HOOKLINE_NATS_SERVER names another one).
func NATSServerBinary() (string, error) {
	natsOnce.Do(func() {
		if b := os.Getenv("HOOKLINE_NATS_SERVER"); b != "" {
			natsBin = b
			return
		}
		root, err := RepoRoot()
		if err != nil {
			natsErr = err
			return
		}
		pkgDir := filepath.Join(root, "pkg")
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2")
		cmd.Dir = pkgDir
		out, err := cmd.Output()
		if err != nil {
			natsErr = fmt.Errorf("go list nats-server: %v", err)
			return
		}
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir := filepath.Join(cache, "hookline")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			natsErr = err
			return
		}
		natsBin = filepath.Join(dir, "nats-server-"+strings.TrimSpace(string(out)))
		if _, err := os.Stat(natsBin); err == nil {
			return
		}
		// Built under another name and renamed, so a concurrent test process never runs half a file.
		tmp := fmt.Sprintf("%s.%d.tmp", natsBin, os.Getpid())
		cmd = exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2")
		cmd.Dir = pkgDir
		if out, err := cmd.CombinedOutput(); err != nil {
			natsErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
			return
		}
		natsErr = os.Rename(tmp, natsBin)
	})
	return natsBin, natsErr
}
