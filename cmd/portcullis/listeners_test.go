package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/portcullis/portcullis/internal/testkit"
)

// rawHTTP writes one raw HTTP/1.1 request on a new connection and returns
// the connection and the response read from it.
func rawHTTP(t *testing.T, addr, request string) (net.Conn, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", request, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, resp
}

// TestServeListenerLimits holds the server's HTTP listeners and its gRPC
// listener to their limits (RT-09, RT-10): "OPTIONS *" is checked like any
// request, never answered by Go's built-in handler; an idle keep-alive
// connection is closed after --idle-timeout, on the forward-auth and the
// admin listener; the gRPC server advertises --max-concurrent-streams.
func TestServeListenerLimits(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	p := startServe(t, "--policy", demo.Policy(), "--http-addr", "127.0.0.1:0", "--http-mode", "envoy",
		"--idle-timeout", "300ms", "--max-concurrent-streams", "77")
	fwd := servedHTTPAddr(t, p)

	_, resp := rawHTTP(t, fwd, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 400 || resp.Header.Get("X-Portcullis-Reason") == "" {
		t.Errorf("forward-auth OPTIONS *: %d, reason %q: want Portcullis's own 400", resp.StatusCode, resp.Header.Get("X-Portcullis-Reason"))
	}
	if _, resp := rawHTTP(t, p.adminAddr, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode == 200 {
		t.Errorf("admin OPTIONS *: %d, want no 200 from Go's built-in handler", resp.StatusCode)
	}

	for name, addr := range map[string]string{"forward-auth": fwd, "admin": p.adminAddr} {
		c, resp := rawHTTP(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.Close {
			t.Fatalf("%s: the server closed the connection after one request", name)
		}
		// The server closing the idle connection ends this read; the
		// deadline only bounds a failing test.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("%s: an idle keep-alive connection was not closed: %v", name, err)
		}
	}

	c, err := net.Dial("tcp", p.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 77 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent %v), want 77", v, ok)
	}
}
