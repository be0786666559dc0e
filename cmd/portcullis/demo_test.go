package main

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis/portcullis/internal/pgtemp"
)

// demoRun is a running `portcullis demo self-service`: its stdout lines and
// everything it wrote on stderr.
type demoRun struct {
	cmd    *exec.Cmd
	lines  chan string
	exited chan error
	mu     sync.Mutex
	stderr bytes.Buffer
}

func (d *demoRun) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.Write(p)
}

func (d *demoRun) errText() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// TestDemoSelfService: one command brings the self-service example up on a
// throwaway PostgreSQL of the machine's own and prints what a newcomer
// needs: a browser signs in through a printed link (each user sees their
// own keys, the organization's admin its keys too), every printed curl
// line answers as its comment says, and
// Ctrl-C stops the server and removes the database and its folder.
func TestDemoSelfService(t *testing.T) {
	if pgtemp.BinDir() == "" {
		if os.Getenv("CI") != "" {
			t.Fatal(pgtemp.ErrNotInstalled)
		}
		t.Skip(pgtemp.ErrNotInstalled)
	}
	alice := newBrowser(t, 1280, 860) // skips or fails without Chromium, as the token page's test does
	start := time.Now()
	d := &demoRun{lines: make(chan string, 256), exited: make(chan error, 1)}
	d.cmd = exec.Command(binPath, "demo", "self-service", "--example", "../../examples/self-service",
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--keys-api-addr", "127.0.0.1:0", "--signin-addr", "127.0.0.1:0")
	d.cmd.Stderr = d
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("demo stderr:\n%s", d.errText())
		}
	})

	// Everything up to the last line of the links.
	var out []string
	deadline := time.After(2 * time.Minute)
	for ready := false; !ready; {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("the demo ended before it was ready: %v\n%s", <-d.exited, strings.Join(out, "\n"))
			}
			out = append(out, l)
			ready = strings.HasPrefix(l, "Ctrl-C stops the demo")
		case <-deadline:
			t.Fatalf("no links after 2 minutes:\n%s", strings.Join(out, "\n"))
		}
	}
	took := time.Since(start)
	t.Logf("the demo was ready in %s", took)
	if took > time.Minute {
		t.Errorf("the demo took %s to be ready; the README promises under a minute", took)
	}
	text := strings.Join(out, "\n")
	links := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  (\w+) +(http://\S+/\w+) `).FindAllStringSubmatch(text, -1) {
		links[m[1]] = m[2]
	}
	if len(links) != 3 || links["alice"] == "" || links["carol"] == "" || links["bob"] == "" {
		t.Fatalf("sign-in links for alice, carol and bob: %v\n%s", links, text)
	}

	// A browser signs in through a printed link, twice (each opening is a
	// fresh one-time session), and sees alice's demo key; bob sees his.
	for range 2 {
		alice.do(chromedp.Navigate(links["alice"]))
		alice.until(`document.body.innerText.includes("u-alice") && document.body.innerText.includes("alice laptop")`)
	}
	bob := newBrowser(t, 1280, 860)
	bob.do(chromedp.Navigate(links["bob"]))
	bob.until(`document.body.innerText.includes("u-bob") && document.body.innerText.includes("globex reader")`)
	if page := bob.eval(`document.body.innerText`); strings.Contains(page, "alice laptop") || strings.Contains(page, "acme ci") {
		t.Error("bob's page shows alice's keys")
	}
	// carol, org-acme's admin, sees alice's key for org-acme, not her
	// personal one.
	carol := newBrowser(t, 1280, 860)
	carol.do(chromedp.Navigate(links["carol"]))
	carol.until(`document.body.innerText.includes("u-carol") && document.body.innerText.includes("acme ci")`)
	if page := carol.eval(`document.body.innerText`); strings.Contains(page, "alice laptop") {
		t.Error("carol's page shows alice's personal key")
	}

	// Every curl line answers as its comment says.
	curl := regexp.MustCompile(`^  curl -i (http://\S+) ((?:-H '[^']*' ?)+)$`)
	header := regexp.MustCompile(`-H '([^:]+): ([^']*)'`)
	var comment string
	checked := 0
	for _, l := range out {
		if strings.HasPrefix(l, "  # ") {
			comment = l
			continue
		}
		m := curl.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		req, _ := http.NewRequest("GET", m[1], nil)
		for _, h := range header.FindAllStringSubmatch(m[2], -1) {
			req.Header.Set(h[1], h[2])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 200
		if strings.HasSuffix(comment, ": 403") {
			want = 403
		}
		if resp.StatusCode != want {
			t.Errorf("%s\n%s: %d, want %d", comment, l, resp.StatusCode, want)
		}
		if want == 200 && !strings.Contains(comment, resp.Header.Get("X-User-Id")+"'s key") {
			t.Errorf("%s: x-user-id %q", comment, resp.Header.Get("X-User-Id"))
		}
		checked++
	}
	if checked != 4 {
		t.Errorf("%d curl lines checked, want 4:\n%s", checked, text)
	}

	// Ctrl-C: the demo stops, exits 0, and leaves nothing behind.
	pgDir := regexp.MustCompile(`PostgreSQL on 127\.0\.0\.1:(\d+) in (\S+),`).FindStringSubmatch(d.errText())
	demoDir := regexp.MustCompile(`full log: (\S+)/server\.log`).FindStringSubmatch(d.errText())
	if pgDir == nil || demoDir == nil {
		t.Fatalf("the demo does not say where its files are:\n%s", d.errText())
	}
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Fatalf("after Ctrl-C: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the demo did not stop within a minute of Ctrl-C")
	}
	for _, dir := range []string{pgDir[2], demoDir[1]} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s is still there after Ctrl-C (%v)", dir, err)
		}
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+pgDir[1]); err == nil {
		c.Close()
		t.Errorf("PostgreSQL still listens on %s after Ctrl-C", pgDir[1])
	}
	if !strings.Contains(d.errText(), "PostgreSQL stopped and "+pgDir[2]+" removed") {
		t.Errorf("the demo does not say it removed its database:\n%s", d.errText())
	}
}
