package envoy_test

// This file holds the parts the rate limit tests run besides Envoy and
// Portcullis: a Redis server (Debian's redis-server) and Envoy's rate
// limit service (github.com/envoyproxy/ratelimit, built by
// scripts/install-deps.sh into .tools/bin/ratelimit), each a real process
// of the test's own on a unix socket in a temporary folder: no port is
// chosen before it is bound, so none can be taken by another process
// meanwhile, and nothing listens beyond this machine.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis/portcullis/internal/testkit"
)

// need finds a tool the rate limit tests run: missing under CI (CI set) is
// a failure, elsewhere the test is skipped, saying what installs it.
func need(t testing.TB, what string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if filepath.IsAbs(c) {
			if isExecutable(c) {
				return c
			}
		} else if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	msg := what + " is not installed: scripts/install-deps.sh installs it"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// procLog is a child process's output, kept for waiting on a line and for
// the failure report.
type procLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{} // closed (and replaced) when buf grows or the process ends
	done bool
}

func newProcLog() *procLog { return &procLog{more: make(chan struct{})} }

func (l *procLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	close(l.more)
	l.more = make(chan struct{})
	return len(b), nil
}

func (l *procLog) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	close(l.more)
	l.more = make(chan struct{})
}

func (l *procLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// child is a process the test started, its output and its exit.
type child struct {
	name   string
	cmd    *exec.Cmd
	out    *procLog
	exited chan struct{}
}

// startChild runs cmd (dying with the test binary), its stdout and stderr
// kept; it is killed when the test ends, and its output reported if the
// test failed.
func startChild(t *testing.T, name string, cmd *exec.Cmd) *child {
	t.Helper()
	c := &child{name: name, cmd: cmd, out: newProcLog(), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.out, c.out
	cmd.SysProcAttr = orphanless()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		c.out.finish()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(c.out.String(), 4096))
		}
	})
	return c
}

// kill stops the process and waits for it.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// waitReady polls ready until it reports true, failing the test if the
// process exits, or logs a line holding one of fatal, first.
func (c *child) waitReady(t *testing.T, ready func() bool, fatal ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		out := c.out.String()
		for _, f := range fatal {
			if strings.Contains(out, f) {
				t.Fatalf("%s: %s\n%s", c.name, f, tail(out, 4096))
			}
		}
		select {
		case <-c.exited:
			t.Fatalf("%s exited:\n%s", c.name, tail(out, 4096))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not ready after 60 s:\n%s", c.name, tail(out, 4096))
		}
	}
}

// startRedis runs redis-server on a unix socket in a folder of its own,
// in memory only (no snapshot, no append-only file), and returns the
// socket's path once it answers PING.
func startRedis(t *testing.T) string {
	t.Helper()
	bin := need(t, "redis-server (Debian's package)", "redis-server", "/usr/bin/redis-server")
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	cmd := exec.Command(bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--dir", dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	c := startChild(t, "redis-server", cmd)
	c.waitReady(t, func() bool { return redisPing(sock) == nil })
	return sock
}

// redisPing sends PING in Redis's protocol and expects PONG.
func redisPing(sock string) error {
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

// rateLimitService is Envoy's rate limit service, serving gRPC on a unix
// socket.
type rateLimitService struct {
	*child
	sock string
}

// startRateLimitService runs the rate limit service on the shipped
// configuration (envoy/ratelimit/config/, read in place) with its counters
// in the Redis at redisSock, and returns once its gRPC health service
// answers SERVING: with HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED, only after
// the configuration loaded (a configuration the service refuses fails the
// test at once, with the service's message).
func startRateLimitService(t *testing.T, redisSock string) *rateLimitService {
	t.Helper()
	bin := need(t, "Envoy's rate limit service (.tools/bin/ratelimit)", filepath.Join(testkit.Root(), ".tools", "bin", "ratelimit"))
	sock := filepath.Join(t.TempDir(), "ratelimit.sock")
	cmd := exec.Command(bin)
	// Its settings are environment variables only: the test's own
	// environment is not passed on, so nothing of the machine's changes them.
	cmd.Env = []string{
		"RUNTIME_ROOT=" + filepath.Join(testkit.Root(), "envoy"),
		"RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_APPDIRECTORY=config",
		"RUNTIME_WATCH_ROOT=false",
		"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED=true",
		"REDIS_SOCKET_TYPE=unix",
		"REDIS_URL=" + redisSock,
		"GRPC_UDS=" + sock,
		// Its HTTP and debug listeners, unused here: loopback, a free port.
		"HOST=127.0.0.1", "PORT=0", "DEBUG_HOST=127.0.0.1", "DEBUG_PORT=0",
		"USE_STATSD=false",
		"LOG_LEVEL=info", "LOG_FORMAT=json",
	}
	s := &rateLimitService{child: startChild(t, "ratelimit", cmd), sock: sock}
	s.waitReady(t, s.serving, "Error loading new configuration", "panic:")
	return s
}

// serving asks the service's gRPC health service.
func (s *rateLimitService) serving() bool {
	if _, err := os.Stat(s.sock); err != nil {
		return false
	}
	conn, err := grpc.NewClient("unix://"+s.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "ratelimit"})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
