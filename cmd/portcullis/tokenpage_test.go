package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/portcullis/portcullis/internal/testkit"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the token page's screenshots into docs/images/ for the README")

// chromium returns Debian's Chromium (scripts/install-deps.sh installs it);
// missing under CI fails the test, elsewhere it skips.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is not installed: scripts/install-deps.sh installs it")
	}
	t.Skip("Chromium not installed (scripts/install-deps.sh installs it)")
	return ""
}

// browser is one headless Chromium, with its own profile (cookies), whose
// tab records the address of every request it makes.
type browser struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	requests []string
}

func newBrowser(t *testing.T, width, height int) *browser {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-default-apps", true), chromedp.Flag("disable-sync", true), chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(width, height), chromedp.UserDataDir(t.TempDir()))
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(alloc)
	t.Cleanup(cancelTab)
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			b.mu.Lock()
			b.requests = append(b.requests, e.Request.URL)
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("%s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// until waits for a JavaScript condition on the page.
func (b *browser) until(cond string) {
	b.t.Helper()
	b.do(chromedp.Poll[chromedp.Void](cond))
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: %v", js, err)
	}
	return s
}

// screenshot saves the page as name.png: into docs/images with
// -update-screenshots, else beside the test's other output.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	dir := b.t.TempDir()
	if *updateScreenshots {
		dir = filepath.Join(testkit.Root(), "docs", "images")
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// origins returns every origin the tab has sent a request to.
func (b *browser) origins() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]bool{}
	for _, r := range b.requests {
		u, err := url.Parse(r)
		if err != nil {
			out[r] = true
			continue
		}
		out[u.Scheme+"://"+u.Host] = true
	}
	return out
}

// openSession asks the API, as the platform backend does with its
// management token, for a sign-in link for user.
func openSession(t *testing.T, r *replica, user string) string {
	t.Helper()
	status, s := r.api(t, "console", "POST", "/v1/sessions", map[string]any{"user": user})
	if status != 201 {
		t.Fatalf("open session: %d %v", status, s)
	}
	return "http://" + r.keysAPIAddr + s["url"].(string)
}

// storeVersion is the key store's latest version, for waiting until the
// replica has applied what the page did.
func storeVersion(t *testing.T, dsn string) float64 {
	t.Helper()
	c, err := pgxConnect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var v int64
	if err := c.QueryRow(context.Background(), "SELECT version FROM portcullis_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return float64(v)
}

// TestTokenPage drives the token page in headless Chromium against the
// real binary on a throwaway PostgreSQL: alice signs in with a link the
// platform asked for, creates a key and reads it from the page (shown
// once), uses it through ext_authz, refreshes it (the old value refused),
// deletes it (refused), deletes all; bob sees none of her keys; a reused
// or expired link, a call without the CSRF header and a cross-site request
// are refused. The page asks nothing of any origin but its own.
func TestTokenPage(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	dsn := pg.Database(t)
	r := startReplica(t, selfService(t), dsn)
	r.waitFor(t, msgIs("key store loaded"))
	origin := "http://" + r.keysAPIAddr
	link := openSession(t, r, "u-alice")

	alice := newBrowser(t, 1280, 860)
	alice.do(chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	if who := alice.text("#who"); who != "Signed in as u-alice" {
		t.Fatalf("header %q", who)
	}
	if u := alice.eval(`location.href`); strings.Contains(u, "code=") {
		t.Errorf("the one-time code stays in the address: %s", u)
	}
	alice.until(`!document.querySelector("#empty").hidden`)

	// Create a key: the value is shown once, with the warning.
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#create-label"), "laptop"),
		chromedp.SendKeys(chromedp.CSS("#create-description"), "my development machine"),
		chromedp.SetValue(chromedp.CSS("#create-tier"), "admin"))
	alice.screenshot("token-page-create")
	alice.do(chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	key := alice.text("#secret-value")
	if !strings.HasPrefix(key, "pk_live_") || len(key) != len("pk_live_")+49 {
		t.Fatalf("the page shows %q", key)
	}
	if !strings.Contains(alice.text("#secret-warning"), "you will not see this key again") {
		t.Errorf("no shown-once warning: %q", alice.text("#secret-warning"))
	}
	alice.screenshot("token-page-secret")
	alice.do(chromedp.Click(chromedp.CSS("#copy")))
	alice.until(`document.querySelector("#copied").textContent !== ""`)
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")), chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")))
	if v := alice.eval(`document.querySelector("#secret-value").textContent`); v != "" {
		t.Error("the value stays in the page after the dialog closed") // "I have copied it" clears it at once
	}
	alice.until(`document.querySelector('button[aria-label="Delete laptop"]') !== null`)
	if row := alice.text("#keys tbody tr"); !strings.Contains(row, "laptop") || !strings.Contains(row, key[:12]) || strings.Contains(row, key) {
		t.Errorf("the row shows %q", row)
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, key, 200, "allowed")

	// A second key, for the list and for delete all.
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#create-label"), "ci"), chromedp.SetValue(chromedp.CSS("#create-expiry"), "30d"),
		chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	ci := alice.text("#secret-value")
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")))
	alice.until(`document.querySelectorAll("#keys tbody tr").length === 2`)
	alice.until(`document.querySelectorAll("#keys svg.usage").length === 2`)
	alice.screenshot("token-page-list")
	// Every control is labelled for screen readers.
	if unlabelled := alice.eval(`[...document.querySelectorAll("input, select, textarea")].filter(e => e.labels.length === 0).map(e => e.id)
		.concat([...document.querySelectorAll("button")].filter(b => !(b.getAttribute("aria-label") || b.textContent.trim())).map(b => b.outerHTML)).join(" ")`); unlabelled != "" {
		t.Errorf("controls without a label: %s", unlabelled)
	}
	// Readable on a phone: nothing wider than the screen.
	alice.do(chromedp.EmulateViewport(390, 844))
	alice.until(`document.documentElement.scrollWidth <= window.innerWidth`)
	alice.screenshot("token-page-phone")
	alice.do(chromedp.EmulateViewport(1280, 860))

	// The tenant switcher: a key made while org-acme is chosen is bound to it.
	alice.do(chromedp.SetValue(chromedp.CSS("#tenant"), "org-acme"))
	alice.eval(`(document.querySelector("#tenant").dispatchEvent(new Event("change")), "")`)
	alice.until(`!document.querySelector("#empty").hidden`) // neither key is bound to org-acme
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#create-label"), "acme build"),
		chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")),
		chromedp.Click(chromedp.CSS("#secret-done")))
	alice.until(`document.querySelector('button[aria-label="Delete acme build"]') !== null`)
	if _, list := r.api(t, "console", "GET", "/v1/keys?tenant=org-acme", nil); !strings.Contains(fmt.Sprint(list["keys"]), "acme build") {
		t.Errorf("the key made for org-acme: %v", list)
	}
	alice.do(chromedp.SetValue(chromedp.CSS("#tenant"), ""))
	alice.eval(`(document.querySelector("#tenant").dispatchEvent(new Event("change")), "")`)
	alice.until(`document.querySelectorAll("#keys tbody tr").length === 3`)

	// Refresh with no overlap: the new value works, the old one is refused.
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Refresh laptop"]`)), chromedp.WaitVisible(chromedp.CSS("#refresh-dialog[open]")),
		chromedp.Click(chromedp.CSS(`#refresh-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	refreshed := alice.text("#secret-value")
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")))
	if refreshed == key {
		t.Fatal("refresh showed the old value")
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, refreshed, 200, "allowed")
	r.wantCheck(t, key, 401, "invalid_api_key")

	// Delete, confirmed by typing the label.
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Delete laptop"]`)), chromedp.WaitVisible(chromedp.CSS("#delete-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "lapto"))
	if alice.eval(`String(document.querySelector("#delete-form button[type=submit]").disabled)`) != "true" {
		t.Error("delete is possible before the label is typed")
	}
	alice.do(chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "p"), chromedp.Click(chromedp.CSS(`#delete-form button[type=submit]`)))
	alice.until(`document.querySelectorAll("#keys tbody tr").length === 2`)
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, refreshed, 401, "invalid_api_key")
	r.wantCheck(t, ci, 200, "allowed")

	// Bob, in a browser of his own, sees none of alice's keys.
	bob := newBrowser(t, 1280, 860)
	bob.do(chromedp.Navigate(openSession(t, r, "u-bob")), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	bob.until(`!document.querySelector("#empty").hidden`)
	// With the keyboard alone: Enter on "New key", a label, Enter creates,
	// the value is shown, Escape closes it.
	bob.do(chromedp.Focus(chromedp.CSS("#new-key")), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")))
	if f := bob.eval(`document.activeElement.id`); f != "create-label" {
		t.Errorf("the create dialog does not focus its first field: %q", f)
	}
	bob.do(chromedp.KeyEvent("keyboard"), chromedp.KeyEvent("\r"), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	bobKey := bob.text("#secret-value")
	bob.do(chromedp.KeyEvent("\x1b"), chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")))
	bob.until(`document.querySelector('button[aria-label="Delete keyboard"]') !== null`)
	bob.until(`document.querySelector("#secret-value").textContent === ""`) // Escape forgets the value
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, bobKey, 200, "allowed")
	if rows := bob.eval(`[...document.querySelectorAll("#keys tbody strong")].map(e => e.textContent).join(",")`); rows != "keyboard" {
		t.Errorf("bob sees the keys %q, want only his own", rows)
	}

	// A call without the CSRF header, from the page itself, is refused.
	if got := alice.eval(`fetch("/v1/keys", {credentials: "same-origin"}).then(r => r.json()).then(b => b.reason)`); got != "csrf" {
		t.Errorf("a cookie call without the CSRF header: %q", got)
	}
	// A cross-site page cannot delete alice's keys with her cookie.
	evil := evilSite(t, origin)
	alice.do(chromedp.Navigate(evil + "/attack.html"))
	alice.until(`document.title === "done"`)
	alice.do(chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	alice.until(`document.querySelectorAll("#keys tbody tr").length === 2`)
	r.wantCheck(t, ci, 200, "allowed")

	// Delete all, confirmed.
	alice.do(chromedp.Click(chromedp.CSS("#delete-all")), chromedp.WaitVisible(chromedp.CSS("#delete-all-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#delete-all-confirm"), "delete all"),
		chromedp.Click(chromedp.CSS(`#delete-all-form button[type=submit]`)))
	alice.until(`!document.querySelector("#empty").hidden`)
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, ci, 401, "invalid_api_key")

	// A reused link signs nobody in.
	alice.do(chromedp.Navigate("about:blank"), chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#signed-out")))
	if e := alice.text("#error"); !strings.Contains(e, "used already or has expired") {
		t.Errorf("a reused link: %q", e)
	}
	// Sign out ends bob's session on the server.
	bob.do(chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#signed-out")))
	bob.do(chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("#signed-out")))

	for _, b := range []*browser{bob} {
		for o := range b.origins() {
			if o != origin && o != "about://" {
				t.Errorf("the token page asked %s", o)
			}
		}
	}
	for o := range alice.origins() {
		if o != origin && o != evil && o != "about://" {
			t.Errorf("the token page asked %s", o)
		}
	}
	if strings.Contains(r.log(), key) || strings.Contains(r.log(), ci) || strings.Contains(r.log(), bobKey) {
		t.Error("a key's value is in the server log")
	}
}

// evilSite serves, on another loopback host name (another site), a page
// that tries to delete every key of u-alice's with her cookie, by fetch
// and by form, then sets its title to "done".
func evilSite(t *testing.T, target string) string {
	t.Helper()
	page := `<!doctype html><title>attack</title><form id="f" method="POST" action="` + target + `/v1/keys/revoke" enctype="text/plain" target="sink">
<input name='{"user":"u-alice","x":"' value='"}'></form><iframe name="sink"></iframe>
<script>
fetch("` + target + `/v1/keys/revoke", {method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"}, body: '{"user":"u-alice"}'})
  .catch(() => {}).finally(() => {
    document.querySelector("iframe").addEventListener("load", () => { document.title = "done"; });
    document.getElementById("f").submit();
  });
</script>`
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(page))
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	return "http://localhost:" + port
}
