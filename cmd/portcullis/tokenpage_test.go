package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
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
// tab records the address of every request it makes, and every uncaught
// script error and security message (a CSP refusal) of its pages.
type browser struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	requests []string
	problems []string
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
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			if d.Exception != nil {
				b.problems = append(b.problems, d.Text+" "+d.Exception.Description)
			} else {
				b.problems = append(b.problems, d.Text)
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Source == cdplog.EntrySourceSecurity {
				b.problems = append(b.problems, e.Entry.Text)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
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

// screenshot saves the window as name.png: into docs/images with
// -update-screenshots, else beside the test's other output.
func (b *browser) screenshot(name string) { b.saveScreenshot(name, chromedp.CaptureScreenshot()) }

// fullScreenshot saves the whole page, below the fold too, as screenshot does.
func (b *browser) fullScreenshot(name string) { b.saveScreenshot(name, chromedp.FullScreenshot(100)) }

func (b *browser) saveScreenshot(name string, shot chromedp.Action[[]byte]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, shot)
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

// choose sets a select's or an input's value as a person would: the
// page sees the change and input events.
func (b *browser) choose(sel, value string) {
	b.t.Helper()
	b.do(chromedp.SetValue(chromedp.CSS(sel), value))
	b.eval(`(e => (e.dispatchEvent(new Event("input", {bubbles: true})), e.dispatchEvent(new Event("change", {bubbles: true})), ""))(document.querySelector(` + strconv.Quote(sel) + `))`)
}

// grantClipboard lets origin's pages read and write the clipboard without
// asking, so the test can read back what a Copy button wrote; the tab acts
// as focused, as a person's would be (the Clipboard API needs focus).
func (b *browser) grantClipboard(origin string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true}); err != nil {
		b.t.Fatal(err)
	}
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(ctx, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
			Permission: &cdpbrowser.PermissionDescriptor{Name: name}, Setting: cdpbrowser.PermissionSettingGranted, Origin: origin}); err != nil {
			b.t.Fatal(err)
		}
	}
}

// clipboard is what the page's clipboard holds.
func (b *browser) clipboard() string {
	b.t.Helper()
	return b.eval(`navigator.clipboard.readText()`)
}

// copied clicks a Copy button and returns what reached the clipboard,
// once the button says so.
func (b *browser) copied(sel string) string {
	b.t.Helper()
	b.eval(`navigator.clipboard.writeText("").then(() => "")`)
	b.do(chromedp.Click(chromedp.CSS(sel)))
	b.until(`document.querySelector(` + strconv.Quote(sel) + `).textContent === "Copied"`)
	return b.clipboard()
}

// pageProblems are the script errors and security messages seen so far.
func (b *browser) pageProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.problems)
}

// origins returns every origin the tab has sent a request to. A data: URL
// is no origin and leaves the machine never: Chromium draws the date
// input's calendar icon from one (the page's own would meet the CSP's
// img-src 'self').
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
		if u.Scheme == "data" {
			continue
		}
		out[u.Scheme+"://"+u.Host] = true
	}
	return out
}

// openSession asks the API, as the platform backend does with its
// management token, for a sign-in link for user, acting for tenant when
// one is given.
func openSession(t *testing.T, r *replica, user string, tenant ...string) string {
	t.Helper()
	body := map[string]any{"user": user}
	if len(tenant) > 0 {
		body["tenant"] = tenant[0]
	}
	status, s := r.api(t, "console", "POST", "/v1/sessions", body)
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

// execSQL runs one statement on the test's database.
func execSQL(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	c, err := pgxConnect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// mustCreate makes a key through the API as who and returns its id and value.
func mustCreate(t *testing.T, r *replica, who string, body map[string]any) (string, string) {
	t.Helper()
	status, k := r.api(t, who, "POST", "/v1/keys", body)
	if status != 201 {
		t.Fatalf("create %v: %d %v", body, status, k)
	}
	return k["id"].(string), k["key"].(string)
}

// checkMethod asks the replica whether key may call method /v1/models.
func checkMethod(t *testing.T, r *replica, method, key string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := r.c.Check(ctx, checkReq(method, "/v1/models", map[string]string{"authorization": "Bearer " + key}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// keyID is the id of the key card whose heading is label ("" if none).
func (b *browser) keyID(label string) string {
	b.t.Helper()
	return b.eval(`[...document.querySelectorAll("#keys li.key")].find(li => li.querySelector("h3").textContent === ` +
		strconv.Quote(label) + `)?.dataset.id || ""`)
}

// card is the CSS selector of the card of key id, with more appended.
func card(id string, more ...string) string {
	return strings.TrimSpace(`#keys li[data-id="` + id + `"] ` + strings.Join(more, " "))
}

// labels are the headings of the key cards shown, in order.
func (b *browser) labels() string {
	b.t.Helper()
	return b.eval(`[...document.querySelectorAll("#keys li.key h3")].map(e => e.textContent).join(",")`)
}

func (b *browser) has(sel string) bool {
	b.t.Helper()
	return b.eval(`String(document.querySelector(`+strconv.Quote(sel)+`) !== null)`) == "true"
}

// requested are the addresses the tab asked for that contain part.
func (b *browser) requested(part string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.requests {
		if strings.Contains(r, part) {
			out = append(out, r)
		}
	}
	return out
}

// settled waits until tenant's wallet has spent spent units today and no
// replica holds any of it (a replica returns what it holds and did not
// spend about a second after its last check), polling the API as the
// platform does, and returns the wallet.
func settled(t *testing.T, r *replica, tenant string, spent int64) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		status, w := r.api(t, "console", "GET", "/v1/wallets/"+tenant, nil)
		if status == 200 && w["held"] == 0.0 && w["spent_today"] == float64(spent) {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wallet of %s did not settle at %d units spent today: %d %v", tenant, spent, status, w)
		}
		<-tick.C
	}
}

// niceTop is a chart's y axis maximum over peak: 1, 2 or 5 times a power
// of ten, as the page rounds it.
func niceTop(peak int64) int64 {
	for m := int64(1); ; m *= 10 {
		for _, top := range []int64{m, 2 * m, 5 * m} {
			if top >= peak {
				return top
			}
		}
	}
}

// yTicks are the y axis labels of a chart whose peak day is peak.
func yTicks(peak int64) string {
	top := niceTop(peak)
	if top%2 == 0 {
		return fmt.Sprintf("%s,%s,%s", "0", thousands(top/2), thousands(top))
	}
	return "0," + thousands(top)
}

// thousands writes n as the page does (en-US: 19,984).
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// sum adds a map's values.
func sum(m map[int64]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// chartShows checks the chart at sel (an svg.chart's container) against
// byAgo (values by days ago, in the last 30 days): one bar per day with
// any, the y axis over the peak, the dates 29 and 14 days ago and
// "today" along the x axis.
func (b *browser) chartShows(sel string, byAgo map[int64]int64, now time.Time) {
	b.t.Helper()
	var peak, days int64
	for ago, v := range byAgo {
		if ago < 30 && v > 0 {
			peak, days = max(peak, v), days+1
		}
	}
	q := func(part string) string {
		return b.eval(`[...document.querySelectorAll(` + strconv.Quote(sel+" "+part) + `)].map(e => e.textContent).join(",")`)
	}
	day := func(ago int) string { return now.UTC().AddDate(0, 0, -ago).Format("Jan 2") }
	if got, want := q(".y-tick"), yTicks(peak); got != want {
		b.t.Errorf("%s: y axis %q, want %q (peak %d)", sel, got, want, peak)
	}
	if got, want := q(".x-tick"), day(29)+","+day(14)+",today"; got != want {
		b.t.Errorf("%s: x axis %q, want %q", sel, got, want)
	}
	if got := b.eval(`String(document.querySelectorAll(` + strconv.Quote(sel+" svg .day") + `).length)`); got != strconv.FormatInt(days, 10) {
		b.t.Errorf("%s: %s days drawn, want %d", sel, got, days)
	}
}

// loaded waits until what the page reads after listing the keys is in:
// the credits panel (no longer aria-busy) and each card's chart and units
// (no "Loading…" left), so nothing moves under a click.
func (b *browser) loaded() {
	b.t.Helper()
	b.until(`document.querySelector("#credits").getAttribute("aria-busy") !== "true" && document.querySelector("#keys .loading") === null`)
}

// TestTokenPage drives the token page in headless Chromium against the
// real binary on a throwaway PostgreSQL.
//
// alice signs in with a link the platform asked for and finds what the
// platform made for her: each key with its id (copied to the clipboard),
// tier and its policy description, organization or "personal", created,
// expires (an expired key marked), last used, and 30 days of checks with
// totals and axes. She creates keys (a 30-day default, no duplicate
// presets, tiers described; one for her organization expiring in 3 days,
// flagged), reads the value once, uses it through ext_authz, disables and
// enables one, refreshes it (the old value refused), deletes it; her user
// id and her organization's id each have a Copy button. carol, org-acme's
// admin, sees every key bound to it with its owner, filters by member,
// disables and enables a member's key (alice may not enable it, nor a key
// the platform disabled), deletes one key and then all of one member's
// keys, confirmed by typing the member's id. bob sees none of alice's
// keys and uses the page with the keyboard alone. A reused link, a call
// without the CSRF header and a cross-site request are refused. The page
// asks nothing of any origin but its own.
func TestTokenPage(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	dsn := pg.Database(t)
	r := startReplica(t, selfService(t), dsn)
	r.waitFor(t, msgIs("key store loaded"))
	origin := "http://" + r.keysAPIAddr
	now := time.Now()

	// What the platform made for its users before alice opens the page.
	// The store cannot age a key, so the test moves two keys' dates back
	// in SQL, as time would, and gives one 19 days of past checks.
	build, buildKey := mustCreate(t, r, "console", map[string]any{"label": "build server", "description": "reads the model list every night",
		"tier": "service", "user": "u-alice", "expires_in": "90d"})
	old, _ := mustCreate(t, r, "console", map[string]any{"label": "old script", "tier": "service", "user": "u-alice"})
	carolsKey, dashboardKey := mustCreate(t, r, "console", map[string]any{"label": "dashboard", "tier": "admin", "user": "u-carol", "tenant": "org-acme"})
	execSQL(t, dsn, `UPDATE portcullis_keys SET created_at = now() - interval '20 days' WHERE id = $1`, build)
	execSQL(t, dsn, `UPDATE portcullis_keys SET created_at = now() - interval '100 days', expires_at = now() - interval '3 days' WHERE id = $1`, old)
	execSQL(t, dsn, `UPDATE portcullis_keys SET created_at = created_at - interval '30 days', expires_at = expires_at - interval '30 days' WHERE id = $1`, carolsKey)
	// Credits (the policy meters /v1: a write 10 units, anything else 1):
	// the platform gives alice's personal context a wallet refilled daily
	// and org-acme one refilled monthly, and grants units to each; bob
	// has none. The past days' checks were reads, charged 1 unit each.
	for tenant, refill := range map[string]map[string]any{"u-alice": {"amount": 1000, "every": "day"}, "org-acme": {"amount": 50000, "every": "month", "day": 1}} {
		if status, w := r.api(t, "console", "PUT", "/v1/wallets/"+tenant, map[string]any{"refill": refill}); status != 201 {
			t.Fatalf("wallet of %s: %d %v", tenant, status, w)
		}
	}
	aliceGranted, acmeGranted := int64(1000), int64(20000)
	for tenant, units := range map[string]int64{"u-alice": aliceGranted, "org-acme": acmeGranted} {
		if status, g := r.api(t, "console", "POST", "/v1/wallets/"+tenant+"/grants", map[string]any{"units": units, "idempotency_key": "welcome"}); status != 200 {
			t.Fatalf("grant to %s: %d %v", tenant, status, g)
		}
	}
	pastDay := func(key, tenant, user string, ago, allowed, denied int64) {
		execSQL(t, dsn, `INSERT INTO portcullis_usage (key_id, day, allowed, denied) VALUES ($1, (now() AT TIME ZONE 'UTC')::date - $2::int, $3, $4)`, key, ago, allowed, denied)
		execSQL(t, dsn, `INSERT INTO portcullis_usage_detail (day, tenant, user_id, key_id, allowed, denied, units)
			VALUES ((now() AT TIME ZONE 'UTC')::date - $1::int, $2, $3, $4, $5, $6, $5)`, ago, tenant, user, key, allowed, denied)
	}
	allowed, denied, peak := int64(0), int64(0), int64(0)
	aliceUnits := map[int64]int64{} // u-alice's units by days ago
	for i := int64(1); i <= 19; i++ {
		a, d := 2+(i*7)%13, i%4/3 // a few denied days
		pastDay(build, "u-alice", "u-alice", i, a, d)
		allowed, denied, peak = allowed+a, denied+d, max(peak, a+d)
		aliceUnits[i] = a
	}
	acmeUnits := map[int64]int64{} // org-acme's
	for i := int64(2); i <= 26; i++ {
		a := 20 + (i*17)%41
		pastDay(carolsKey, "org-acme", "u-carol", i, a, 0)
		acmeUnits[i] = a
	}
	// Today: three reads allowed, one write denied (the key is read only):
	// 3 units from alice's wallet, none for the write refused.
	for range 3 {
		r.wantCheck(t, buildKey, 200, "allowed")
	}
	if got := checkMethod(t, r, "POST", buildKey); got != 403 {
		t.Fatalf("a read-only key writing: %d", got)
	}
	// Two reads with her personal key for org-acme (IB-Context): 2 units
	// from org-acme's wallet. carol's dashboard reads 4 times and writes
	// once: 14 more.
	for range 2 {
		if status, why, tenant := r.checkAs(t, buildKey, "org-acme"); status != 200 || tenant != "org-acme" {
			t.Fatalf("alice's key for org-acme: %d %s %q", status, why, tenant)
		}
	}
	for range 4 {
		r.wantCheck(t, dashboardKey, 200, "allowed")
	}
	if got := checkMethod(t, r, "POST", dashboardKey); got != 200 {
		t.Fatalf("carol's dashboard writing: %d", got)
	}
	allowed, denied, peak = allowed+5, denied+1, max(peak, 6)
	aliceUnits[0] = 3
	acmeUnits[0] = 2 + 4 + 10
	r.waitFor(t, msgIs("key usage flushed")) // last_used_at is written
	// The replica returns the units it holds and did not spend within a
	// second or so of its last check: then the balances are exact.
	if w := settled(t, r, "u-alice", 3); w["balance"] != float64(aliceGranted-3) {
		t.Fatalf("alice's wallet: %v", w)
	}
	settled(t, r, "org-acme", 16)

	link := openSession(t, r, "u-alice")
	alice := newBrowser(t, 1280, 900)
	alice.grantClipboard(origin)
	alice.do(chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	if who := alice.text("#who"); who != "Signed in as u-alice" {
		t.Fatalf("header %q", who)
	}
	if u := alice.eval(`location.href`); strings.Contains(u, "code=") {
		t.Errorf("the one-time code stays in the address: %s", u)
	}

	// Her user id; no organization id while she looks at all her keys.
	if id := alice.text("#user-id"); id != "u-alice" {
		t.Errorf("user id %q", id)
	}
	if alice.eval(`String(document.querySelector("#org-id-row").hidden)`) != "true" {
		t.Error("an organization id is shown for all of alice's keys")
	}

	// Each key shows what a person managing keys expects.
	alice.until(`document.querySelectorAll("#keys li.key").length === 2 && document.querySelector('#keys .legend') !== null`)
	date := func(t time.Time) string { return t.Format("Jan 2, 2006") }
	for sel, want := range map[string]string{
		card(build, ".fact-id code"):    build,
		card(build, ".fact-tier dd"):    "service\nRead only: GET and HEAD under /v1",
		card(build, ".fact-tenant dd"):  "personal",
		card(build, ".fact-created dd"): date(now.AddDate(0, 0, -20)),
		card(build, ".fact-used dd"):    "today",
		card(build, ".total-allowed"):   fmt.Sprintf("%d allowed", allowed),
		card(build, ".total-denied"):    fmt.Sprintf("%d denied", denied),
		card(old, ".fact-used dd"):      "never",
		card(old, ".fact-expires dd"):   "expired on " + date(now.AddDate(0, 0, -3)),
		card(old, ".badge.state"):       "expired",
		"#summary":                      "2 keys: 1 expired.",
	} {
		if got := alice.text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	if got, want := alice.text(card(build, ".fact-expires dd")), date(now.AddDate(0, 0, 90)); !strings.HasPrefix(got, want+" (in ") {
		t.Errorf("build server expires %q, want %s (in …)", got, want)
	}
	if alice.has(card(build, ".badge.soon")) || alice.has(card(old, ".badge.soon")) {
		t.Error("a key far from expiry, or expired, is flagged as expiring soon")
	}
	// The chart's axes: checks a day from 0 to a round maximum, dates below.
	buildDays := map[int64]int64{0: 6}
	for i := int64(1); i <= 19; i++ {
		buildDays[i] = 2 + (i*7)%13 + i%4/3
	}
	if p := slices.Max(slices.Collect(maps.Values(buildDays))); p != peak {
		t.Fatalf("build server's peak day %d, counted %d", p, peak)
	}
	alice.chartShows(card(build, ".usage"), buildDays, now)

	// Her credits: her personal wallet's balance (granted, less today's 3
	// units), spent today, its daily refill, nothing held, and its units
	// per day over 30 days with their total and axes; on each key card its
	// units and from which wallets (2 of build server's from org-acme's,
	// read for it with IB-Context).
	alice.loaded()
	tomorrow := now.UTC().AddDate(0, 0, 1)
	for sel, want := range map[string]string{
		"#credits-title":              "Your credits",
		"#credit-balance":             thousands(aliceGranted-3) + " units",
		"#credit-spent":               "3 units",
		"#credit-refill":              "Up to 1,000 units every day\nnext on " + tomorrow.Format("Jan 2, 2006") + ", 00:00 UTC",
		"#credits .total-units":       thousands(sum(aliceUnits)) + " units in 30 days",
		card(build, ".fact-units dd"): fmt.Sprintf("%s units\n%s from your wallet, 2 from org-acme's wallet", thousands(sum(aliceUnits)+2), thousands(sum(aliceUnits))),
		card(old, ".fact-units dd"):   "0 units",
	} {
		if got := alice.text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	if alice.eval(`String(document.querySelector("#credit-held-row").hidden)`) != "true" {
		t.Errorf("held units shown while the replica holds none: %q", alice.text("#credit-held-row"))
	}
	alice.chartShows("#credit-usage", aliceUnits, now)
	if got, want := alice.eval(`document.querySelector("#credit-usage svg .day:last-of-type title").textContent`),
		now.UTC().Format("Jan 2")+": 3 units, 3 allowed and 0 denied checks"; got != want { // the write refused for its tier acted for no tenant yet
		t.Errorf("today's bar says %q, want %q", got, want)
	}
	alice.screenshot("token-page-credits")

	// The create dialog: 30 days by default, each preset once, the
	// longest the policy allows marked, tiers with their descriptions.
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")))
	if v := alice.eval(`document.querySelector("#create-expiry").value`); v != "30d" {
		t.Errorf("the default expiry is %q, want 30d", v)
	}
	if hint, want := alice.text("#create-expiry-hint"), "The key will expire on "+now.AddDate(0, 0, 30).Format("Mon, Jan 2, 2006")+"."; hint != want {
		t.Errorf("expiry hint %q, want %q", hint, want)
	}
	presets := alice.eval(`[...document.querySelectorAll("#create-expiry option")].map(o => o.textContent).join("|")`)
	if want := "In 7 days|In 30 days|In 60 days|In 90 days|In a year (the longest allowed)|On a date…"; presets != want {
		t.Errorf("expiry presets %q, want %q", presets, want)
	}
	if tiers := alice.eval(`[...document.querySelectorAll("#create-tiers label")].map(l => l.innerText.replace(/\s+/g, " ").trim()).join("|")`); tiers !=
		"service Read only: GET and HEAD under /v1|admin Read and write: every method under /v1" {
		t.Errorf("tiers offered %q", tiers)
	}
	if orgs := alice.eval(`[...document.querySelectorAll("#create-tenant option")].map(o => o.value + "=" + o.textContent).join("|")`); orgs != "=None: a personal key of u-alice|org-acme=org-acme" {
		t.Errorf("organizations offered %q", orgs)
	}
	alice.do(chromedp.SendKeys(chromedp.CSS("#create-label"), "laptop"),
		chromedp.SendKeys(chromedp.CSS("#create-description"), "my development machine"),
		chromedp.Click(chromedp.CSS(`#create-tiers input[value=admin]`)))
	alice.choose("#create-expiry", "90d")
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
	if got := alice.copied("#copy"); got != key {
		t.Errorf("Copy put %q on the clipboard", got)
	}
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")), chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")))
	if v := alice.eval(`document.querySelector("#secret-value").textContent`); v != "" {
		t.Error("the value stays in the page after the dialog closed") // "I have copied it" clears it at once
	}
	alice.until(`document.querySelector('button[aria-label="Delete laptop"]') !== null`)
	laptop := alice.keyID("laptop")
	if c := alice.text(card(laptop)); !strings.Contains(c, key[:12]) || strings.Contains(c, key) || !strings.Contains(c, "admin") {
		t.Errorf("the card shows %q", c)
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, key, 200, "allowed")
	// laptop may write: a write costs 10 units, a read 1.
	if got := checkMethod(t, r, "POST", key); got != 200 {
		t.Fatalf("laptop writing: %d", got)
	}
	aliceUnits[0] += 11
	settled(t, r, "u-alice", aliceUnits[0])

	// A key for her organization, to a date three days ahead: flagged.
	soon := now.AddDate(0, 0, 3)
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#create-label"), "acme ci"))
	alice.choose("#create-tenant", "org-acme")
	alice.choose("#create-expiry", "date")
	alice.do(chromedp.WaitVisible(chromedp.CSS("#create-date")))
	alice.choose("#create-date", soon.Format("2006-01-02"))
	alice.do(chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	acmeCI := alice.text("#secret-value")
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")))
	alice.until(`document.querySelectorAll("#keys li.key").length === 4 && document.querySelectorAll("#keys .legend").length === 4`)
	ci := alice.keyID("acme ci")
	if got := alice.text(card(ci, ".fact-tenant dd")); got != "org-acme" {
		t.Errorf("acme ci's organization %q", got)
	}
	if got := alice.text(card(ci, ".fact-expires dd")); !strings.HasPrefix(got, date(soon)+": expires in ") || !alice.has(card(ci, ".badge.soon")) {
		t.Errorf("a key expiring in 3 days shows %q, flagged %v", got, alice.has(card(ci, ".badge.soon")))
	}
	if got := alice.text("#summary"); got != "4 keys: 1 expires within 7 days, 1 expired." {
		t.Errorf("summary %q", got)
	}
	// The credits were read again with the list: laptop's 11 units.
	alice.loaded()
	for sel, want := range map[string]string{
		"#credit-balance":              thousands(aliceGranted-aliceUnits[0]) + " units",
		"#credit-spent":                thousands(aliceUnits[0]) + " units",
		"#credits .total-units":        thousands(sum(aliceUnits)) + " units in 30 days",
		card(laptop, ".fact-units dd"): "11 units\nfrom your wallet",
		card(ci, ".fact-units dd"):     "0 units",
	} {
		if got := alice.text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	alice.chartShows("#credit-usage", aliceUnits, now)

	// Disable and enable her own key: refused while disabled.
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Disable laptop"]`)))
	alice.until(`document.querySelector('button[aria-label="Enable laptop"]') !== null`)
	if got := alice.text(card(laptop, ".disabled-note")); got != "Disabled by you." {
		t.Errorf("disabled note %q", got)
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, key, 401, "key_disabled")
	alice.loaded()
	alice.until(`document.querySelectorAll("#keys .legend").length === 4`)
	alice.fullScreenshot("token-page-list")
	// Every control is labelled for screen readers.
	if unlabelled := alice.eval(`[...document.querySelectorAll("input, select, textarea")].filter(e => e.labels.length === 0).map(e => e.id)
		.concat([...document.querySelectorAll("button")].filter(b => !(b.getAttribute("aria-label") || b.textContent.trim())).map(b => b.outerHTML)).join(" ")`); unlabelled != "" {
		t.Errorf("controls without a label: %s", unlabelled)
	}
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Enable laptop"]`)))
	alice.until(`document.querySelector('button[aria-label="Disable laptop"]') !== null`)
	// Readable on a phone: nothing wider than the screen.
	alice.loaded()
	alice.do(chromedp.EmulateViewport(390, 844))
	alice.until(`document.documentElement.scrollWidth <= window.innerWidth`)
	alice.eval(`(window.scrollTo(0, 0), "")`)
	alice.screenshot("token-page-phone")
	alice.do(chromedp.EmulateViewport(1280, 900))
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, key, 200, "allowed")
	// Copy buttons fill the clipboard: her user id, a key's id.
	if got := alice.copied("#copy-user-id"); got != "u-alice" {
		t.Errorf("Copy user ID put %q on the clipboard", got)
	}
	if got := alice.copied(card(build, ".fact-id button")); got != build {
		t.Errorf("Copy ID put %q on the clipboard, want %s", got, build)
	}

	// Acting for org-acme: its id with a Copy button, only her keys bound
	// to it, and a key made there is bound to it.
	alice.choose("#tenant", "org-acme")
	alice.until(`!document.querySelector("#org-id-row").hidden && document.querySelectorAll("#keys li.key").length === 1`)
	if got := alice.copied("#copy-org-id"); got != "org-acme" {
		t.Errorf("Copy organization ID put %q on the clipboard", got)
	}
	if got := alice.labels(); got != "acme ci" {
		t.Errorf("alice sees %q for org-acme, want only her key bound to it", got)
	}
	if alice.has("#keys .fact-owner") || alice.eval(`String(document.querySelector("#member-filter").hidden)`) != "true" {
		t.Error("a member who is not an admin gets the owner column or the member filter")
	}
	// Nothing of org-acme's wallet for a member who does not manage its
	// keys: no panel, no call for its usage; her own key's units only.
	alice.loaded()
	if alice.eval(`String(document.querySelector("#credits").hidden)`) != "true" {
		t.Errorf("alice, a member of org-acme, sees its credits: %q", alice.text("#credits"))
	}
	if got := alice.text(card(ci, ".fact-units dd")); got != "0 units" {
		t.Errorf("acme ci's units for alice: %q", got)
	}
	alice.do(chromedp.Click(chromedp.CSS("#new-key")), chromedp.WaitVisible(chromedp.CSS("#create-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#create-label"), "acme build"),
		chromedp.Click(chromedp.CSS(`#create-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	acmeBuild := alice.text("#secret-value")
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")))
	alice.until(`document.querySelector('button[aria-label="Delete acme build"]') !== null`)
	if _, list := r.api(t, "console", "GET", "/v1/keys?tenant=org-acme&user=u-alice", nil); !strings.Contains(fmt.Sprint(list["keys"]), "acme build") {
		t.Errorf("the key made for org-acme: %v", list)
	}
	alice.choose("#tenant", "")
	alice.until(`document.querySelectorAll("#keys li.key").length === 5`)
	alice.loaded()

	// Refresh with no overlap, keeping the expiry: the new value works,
	// the old one is refused.
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Refresh laptop"]`)), chromedp.WaitVisible(chromedp.CSS("#refresh-dialog[open]")))
	if v := alice.eval(`document.querySelector("#refresh-expiry").value`); v != "keep" {
		t.Errorf("refresh's default expiry %q, want keep", v)
	}
	alice.do(chromedp.Click(chromedp.CSS(`#refresh-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS("#secret-dialog[open]")))
	refreshed := alice.text("#secret-value")
	alice.do(chromedp.Click(chromedp.CSS("#secret-done")))
	if refreshed == key {
		t.Fatal("refresh showed the old value")
	}
	alice.until(`document.querySelector(` + strconv.Quote(card(laptop, ".fact-start code")) + `)?.textContent === ` + strconv.Quote(refreshed[:12]+"…"))
	alice.loaded() // the list read again after the refresh is in
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
	alice.until(`document.querySelectorAll("#keys li.key").length === 4`)
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, refreshed, 401, "invalid_api_key")
	r.wantCheck(t, buildKey, 200, "allowed")

	// Bob, in a browser of his own, sees none of alice's keys.
	bob := newBrowser(t, 1280, 860)
	bob.do(chromedp.Navigate(openSession(t, r, "u-bob")), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	bob.until(`!document.querySelector("#empty").hidden`)
	// bob has no wallet: his calls are not metered.
	bob.loaded()
	if got := bob.text("#credits-none"); got != "You have no wallet: calls acting for you are not metered, and cost no credits." ||
		bob.eval(`String(document.querySelector("#credits-body").hidden)`) != "true" {
		t.Errorf("bob's credits: %q", bob.text("#credits"))
	}
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
	if rows := bob.labels(); rows != "keyboard" {
		t.Errorf("bob sees the keys %q, want only his own", rows)
	}

	// carol, org-acme's admin, signed in for org-acme: its id, every key
	// bound to it with its owner, and a member filter.
	settled(t, r, "org-acme", 16)
	carol := newBrowser(t, 1280, 900)
	carol.grantClipboard(origin)
	carol.do(chromedp.Navigate(openSession(t, r, "u-carol", "org-acme")), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	carol.until(`document.querySelectorAll("#keys li.key").length === 3 && document.querySelectorAll("#member option").length === 3`)
	if got := carol.text("#user-id"); got != "u-carol" {
		t.Errorf("carol's user id %q", got)
	}
	if got := carol.text("#keys-title"); got != "Every key bound to org-acme" {
		t.Errorf("carol's heading %q", got)
	}
	owners := carol.eval(`[...document.querySelectorAll("#keys li.key")].map(li => li.querySelector("h3").textContent + "=" + li.querySelector(".fact-owner dd").textContent).sort().join(",")`)
	if owners != "acme build=u-alice,acme ci=u-alice,dashboard=u-carol (you)" {
		t.Errorf("carol sees %q", owners)
	}
	if got := carol.eval(`[...document.querySelectorAll("#member option")].map(o => o.value).join(",")`); got != ",u-alice,u-carol" {
		t.Errorf("member filter %q", got)
	}
	if carol.has(`button[aria-label="Refresh acme ci"]`) {
		t.Error("an admin is offered a new value of a member's key")
	}
	// org-acme's credits: granted less today's 16 units (alice's 2 reads
	// for it, the dashboard's 4 reads and a write), the monthly refill,
	// units per day; each key's units read through org-acme.
	carol.loaded()
	firstOfNext := time.Date(now.UTC().Year(), now.UTC().Month()+1, 1, 0, 0, 0, 0, time.UTC)
	for sel, want := range map[string]string{
		"#credits-title":                  "Credits of org-acme",
		"#credit-balance":                 thousands(acmeGranted-16) + " units",
		"#credit-spent":                   "16 units",
		"#credit-refill":                  "Up to 50,000 units on day 1 of every month\nnext on " + firstOfNext.Format("Jan 2, 2006") + ", 00:00 UTC",
		"#credits .total-units":           thousands(sum(acmeUnits)) + " units in 30 days",
		card(carolsKey, ".fact-units dd"): thousands(sum(acmeUnits)-2) + " units\nfrom org-acme's wallet",
		card(ci, ".fact-units dd"):        "0 units",
	} {
		if got := carol.text(sel); got != want {
			t.Errorf("carol: %s: %q, want %q", sel, got, want)
		}
	}
	carol.chartShows("#credit-usage", acmeUnits, now)
	// She disables alice's key; the platform disables another of alice's.
	carol.do(chromedp.Click(chromedp.CSS(`button[aria-label="Disable acme ci"]`)))
	carol.until(`document.querySelector('button[aria-label="Enable acme ci"]') !== null`)
	if status, k := r.api(t, "console", "PATCH", "/v1/keys/"+build, map[string]any{"disabled": true}); status != 200 {
		t.Fatalf("the platform disables build server: %d %v", status, k)
	}
	// alice sees who disabled them, and may enable neither.
	alice.do(chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	alice.until(`document.querySelectorAll("#keys .disabled-note").length === 2`)
	for id, want := range map[string]string{
		ci:    "Disabled by an admin of org-acme. Only an admin of org-acme can enable it.",
		build: "Disabled by the platform. Only the platform's administrators can enable it.",
	} {
		if got := alice.text(card(id, ".disabled-note")); got != want {
			t.Errorf("alice's note: %q, want %q", got, want)
		}
		if alice.has(card(id, `button[aria-label^="Enable"]`)) {
			t.Errorf("alice is offered to enable %s", id)
		}
	}
	alice.do(chromedp.Click(chromedp.CSS(`button[aria-label="Refresh acme ci"]`)), chromedp.WaitVisible(chromedp.CSS("#refresh-dialog[open]")))
	if alice.eval(`String(document.querySelector("#refresh-disabled").hidden)`) != "false" {
		t.Error("refreshing a disabled key does not say the new value stays disabled")
	}
	alice.do(chromedp.Click(chromedp.CSS("#refresh-form .cancel")))
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, acmeCI, 401, "key_disabled")
	carol.do(chromedp.Click(chromedp.CSS(`button[aria-label="Enable acme ci"]`)))
	carol.until(`document.querySelector('button[aria-label="Disable acme ci"]') !== null`)
	carol.loaded()
	carol.until(`document.querySelectorAll("#keys .legend").length === 3`)
	carol.fullScreenshot("token-page-admin")
	if status, k := r.api(t, "console", "PATCH", "/v1/keys/"+build, map[string]any{"disabled": false}); status != 200 {
		t.Fatalf("the platform enables build server: %d %v", status, k)
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, acmeCI, 200, "allowed")

	// One member's keys; delete one of them, confirmed by its label.
	carol.choose("#member", "u-alice")
	carol.until(`document.querySelectorAll("#keys li.key").length === 2`)
	if got := carol.labels(); got != "acme build,acme ci" { // newest first
		t.Errorf("carol's filter on u-alice shows %q", got)
	}
	carol.do(chromedp.Click(chromedp.CSS(`button[aria-label="Delete acme build"]`)), chromedp.WaitVisible(chromedp.CSS("#delete-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#delete-confirm"), "acme build"), chromedp.Click(chromedp.CSS(`#delete-form button[type=submit]`)))
	carol.until(`document.querySelectorAll("#keys li.key").length === 1`)
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, acmeBuild, 401, "invalid_api_key")
	// Every key of a member bound to org-acme, confirmed by typing the
	// member's id: her personal keys stay.
	carol.do(chromedp.Click(chromedp.CSS("#delete-member")), chromedp.WaitVisible(chromedp.CSS("#delete-member-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#delete-member-confirm"), "u-alic"))
	if v := carol.eval(`document.querySelector("#delete-member-user").value`); v != "u-alice" {
		t.Errorf("the dialog is for %q, want the member filtered on", v)
	}
	if carol.eval(`String(document.querySelector("#delete-member-form button[type=submit]").disabled)`) != "true" {
		t.Error("a member's keys can be deleted before their id is typed")
	}
	carol.do(chromedp.SendKeys(chromedp.CSS("#delete-member-confirm"), "e"))
	carol.screenshot("token-page-delete-member")
	carol.do(chromedp.Click(chromedp.CSS(`#delete-member-form button[type=submit]`)))
	carol.until(`!document.querySelector("#empty").hidden`)
	if got := carol.text("#status"); got != "1 key of u-alice bound to org-acme deleted." {
		t.Errorf("status %q", got)
	}
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, acmeCI, 401, "invalid_api_key")
	r.wantCheck(t, buildKey, 200, "allowed")
	carol.choose("#member", "")
	carol.until(`document.querySelectorAll("#keys li.key").length === 1`)
	if got := carol.labels(); got != "dashboard" {
		t.Errorf("carol's own key: %q", got)
	}
	if status, _ := r.api(t, "console", "GET", "/v1/keys/"+carolsKey, nil); status != 200 {
		t.Errorf("carol's own key after deleting alice's: %d", status)
	}
	if got := carol.copied("#copy-org-id"); got != "org-acme" {
		t.Errorf("carol's Copy organization ID put %q on the clipboard", got)
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
	alice.until(`document.querySelectorAll("#keys li.key").length === 2`)
	r.wantCheck(t, buildKey, 200, "allowed")

	// Delete all, confirmed.
	alice.do(chromedp.Click(chromedp.CSS("#delete-all")), chromedp.WaitVisible(chromedp.CSS("#delete-all-dialog[open]")),
		chromedp.SendKeys(chromedp.CSS("#delete-all-confirm"), "delete all"),
		chromedp.Click(chromedp.CSS(`#delete-all-form button[type=submit]`)))
	alice.until(`!document.querySelector("#empty").hidden`)
	r.applied(t, storeVersion(t, dsn))
	r.wantCheck(t, buildKey, 401, "invalid_api_key")

	// A reused link signs nobody in.
	alice.do(chromedp.Navigate("about:blank"), chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#signed-out")))
	if e := alice.text("#error"); !strings.Contains(e, "used already or has expired") {
		t.Errorf("a reused link: %q", e)
	}
	// Sign out ends bob's session on the server.
	bob.do(chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#signed-out")))
	bob.do(chromedp.Navigate(origin+"/"), chromedp.WaitVisible(chromedp.CSS("#signed-out")))

	for name, b := range map[string]*browser{"bob": bob, "carol": carol} {
		for o := range b.origins() {
			if o != origin && o != "about://" {
				t.Errorf("the token page asked %s (%s's browser)", o, name)
			}
		}
	}
	for _, u := range alice.requested("/v1/usage?") {
		if strings.Contains(u, "tenant=org-acme") {
			t.Errorf("alice, a member of org-acme, asked for its usage: %s", u)
		}
	}
	for name, b := range map[string]*browser{"alice": alice, "bob": bob, "carol": carol} {
		if p := b.pageProblems(); len(p) > 0 {
			t.Errorf("script errors or CSP refusals in %s's browser: %q", name, p)
		}
	}
	for o := range alice.origins() {
		if o != origin && o != evil && o != "about://" {
			t.Errorf("the token page asked %s", o)
		}
	}
	for _, k := range []string{key, refreshed, acmeCI, acmeBuild, bobKey, buildKey} {
		if strings.Contains(r.log(), k) {
			t.Error("a key's value is in the server log")
		}
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

// TestTokenPageUnmetered: under a policy that meters nothing (the
// self-service example without its credits block) the page shows no
// credits panel and no units on the cards, and asks for no usage rows.
func TestTokenPageUnmetered(t *testing.T) {
	pg := testkit.SharedPostgreSQL(t)
	dsn := pg.Database(t)
	pol := selfService(t)
	b, err := os.ReadFile(pol)
	if err != nil {
		t.Fatal(err)
	}
	p := string(b)
	i := strings.Index(p, "\ncredits:\n")
	j := strings.Index(p[i+1:], "\n\n")
	if i < 0 || j < 0 {
		t.Fatal("the self-service example has no credits block to take out")
	}
	p = regexp.MustCompile(`(?m)^  credits_remaining: .*\n`).ReplaceAllString(p[:i+1]+p[i+1+j+2:], "")
	if err := os.WriteFile(pol, []byte(p), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, pol, dsn)
	r.waitFor(t, msgIs("key store loaded"))
	id, _ := mustCreate(t, r, "console", map[string]any{"label": "build server", "tier": "service", "user": "u-alice"})

	alice := newBrowser(t, 1280, 900)
	alice.do(chromedp.Navigate(openSession(t, r, "u-alice")), chromedp.WaitVisible(chromedp.CSS("#keys-section")))
	alice.until(`document.querySelectorAll("#keys li.key").length === 1`)
	alice.loaded()
	if got := alice.eval(`fetch("/v1/sessions/current", {headers: {"X-CSRF-Token": sessionStorage.getItem("portcullis.csrf")}}).then(r => r.json()).then(s => String(s.metered))`); got != "false" {
		t.Fatalf("the session says metered: %s", got)
	}
	if alice.eval(`String(document.querySelector("#credits").hidden)`) != "true" {
		t.Errorf("a policy that meters nothing shows credits: %q", alice.text("#credits"))
	}
	if alice.has(card(id, ".fact-units")) {
		t.Errorf("a policy that meters nothing shows a key's units: %q", alice.text(card(id, ".fact-units")))
	}
	if got := alice.requested("/v1/usage"); len(got) > 0 {
		t.Errorf("the page asked for usage rows: %q", got)
	}
	if p := alice.pageProblems(); len(p) > 0 {
		t.Errorf("script errors or CSP refusals: %q", p)
	}
}
