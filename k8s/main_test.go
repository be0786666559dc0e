package k8s_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binPath is the real portcullis binary, built once from this repository
// (the parent module) by TestMain: its serve -h names the flags the chart
// may pass, its validate checks the policies the chart and the manifests
// carry.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-k8s-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "portcullis")
	build := exec.Command("go", "build", "-o", binPath, "./cmd/portcullis")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building portcullis: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// portcullis returns the binary TestMain built.
func portcullis(t *testing.T) string {
	t.Helper()
	return binPath
}
