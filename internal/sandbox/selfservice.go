package sandbox

// This file holds `portcullis demo self-service`.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portcullis/portcullis/extauthz"
	"github.com/portcullis/portcullis/internal/demo"
	"github.com/portcullis/portcullis/internal/pgtemp"
	"github.com/portcullis/portcullis/internal/server"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// Config is what the demo is told on its command line.
type Config struct {
	Example     string // the example's folder: policy.yaml and demo-credentials.json
	GRPCAddr    string // ext_authz gRPC
	AdminAddr   string // /healthz, /readyz, /metrics, /keys/usage
	HTTPAddr    string // forward-auth (envoy mode), for the curl lines
	KeysAPIAddr string // the key-management API and the token page
	SignInAddr  string // the demo's sign-in links
	LogLevel    slog.Level
	Version     string // the binary's, for the serving line
}

// person is a demo user of the self-service example: who the sign-in
// links and the demo keys are for.
type person struct {
	name   string // the link's path: /alice
	user   string // the user id the platform signs in
	tenant string // the tenant the page opens on ("" = personal)
	about  string
}

var people = []person{
	{"alice", "u-alice", "", "a member of org-acme"},
	{"carol", "u-carol", "org-acme", "org-acme's admin: manages every key bound to org-acme"},
	{"bob", "u-bob", "org-globex", "a member of org-globex, another organization"},
}

// demoKey is a key the demo makes through the API, as the platform's
// backend would for its users.
type demoKey struct {
	Label       string `json:"label"`
	Description string `json:"description"`
	Tier        string `json:"tier"`
	User        string `json:"user"`
	Tenant      string `json:"tenant,omitempty"`
}

var demoKeys = []demoKey{
	{"alice laptop", "made by the demo: alice's own key", "admin", "u-alice", ""},
	{"acme ci", "made by the demo: alice's key for org-acme, which its admin carol manages too", "service", "u-alice", "org-acme"},
	{"globex reader", "made by the demo: bound to org-globex", "service", "u-bob", "org-globex"},
}

// SelfService runs the self-service demo until ctx ends, printing its
// links on out and its progress on progress; then it stops the server and
// removes the database and every file it made. It returns what went wrong,
// saying what to do.
func SelfService(ctx context.Context, cfg Config, out, progress io.Writer) (err error) {
	pol := filepath.Join(cfg.Example, "policy.yaml")
	creds, snap, err := readExample(cfg.Example, pol)
	if err != nil {
		return err
	}
	token := creds.ManagementTokens["console"]
	if token == "" {
		return fmt.Errorf("%s: no management token \"console\" (management_tokens): the demo opens sign-in links with it", creds.Path)
	}
	dir, err := os.MkdirTemp("", "portcullis-demo-")
	if err != nil {
		return fmt.Errorf("a folder for the demo: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}()

	fmt.Fprintf(progress, "demo: starting a throwaway PostgreSQL from %s\n", binDirOrHint())
	start := time.Now()
	pg, err := pgtemp.Start(pgtemp.Options{MaxConnections: 50})
	if err != nil {
		return err
	}
	defer func() {
		if rmErr := pg.Remove(); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("removing the demo's PostgreSQL: %w", rmErr))
			return
		}
		fmt.Fprintf(progress, "demo: PostgreSQL stopped and %s removed\n", pg.Dir())
	}()
	dsn, err := prepareDatabase(ctx, pg, progress)
	if err != nil {
		return err
	}
	if err := os.Setenv(snap.KeyStore().DSNEnv, dsn); err != nil {
		return err
	}

	srv, addrs, stopServer, err := startServer(ctx, cfg, pol, filepath.Join(dir, "server.log"), progress)
	if err != nil {
		return err
	}
	defer stopServer()
	fmt.Fprintf(progress, "demo: serving %s (full log: %s)\n", pol, filepath.Join(dir, "server.log"))
	c := &client{base: "http://" + addrs.keysAPI, token: token}
	if err := waitReady(ctx, srv, "http://"+addrs.admin+"/readyz"); err != nil {
		return err
	}
	made, version, err := makeKeys(ctx, c)
	if err != nil {
		return err
	}
	if err := c.waitApplied(ctx, srv, version); err != nil {
		return err
	}

	signIn, err := net.Listen("tcp", cfg.SignInAddr)
	if err != nil {
		return listenError("--signin-addr", err)
	}
	hs := &http.Server{Handler: signInHandler(c, addrs.keysAPI), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(signIn) }()
	defer hs.Close()

	if err := printLinks(out, addrs, signIn.Addr().String(), made, token, dsn, pol); err != nil {
		return fmt.Errorf("printing the demo's links: %w", err)
	}
	fmt.Fprintf(progress, "demo: ready in %.1f s; Ctrl-C stops it and removes everything it made\n", time.Since(start).Seconds())
	select {
	case <-ctx.Done():
		fmt.Fprintln(progress, "demo: stopping")
		return nil
	case err := <-srv.done:
		srv.done <- err // for stopServer
		return fmt.Errorf("the server stopped: %w", err)
	}
}

// readExample loads the example's demo credentials and its policy, which
// must keep its keys in a key store.
func readExample(dir, pol string) (*demo.Credentials, *policy.Snapshot, error) {
	if _, err := os.Stat(pol); err != nil {
		return nil, nil, fmt.Errorf("%s: %w: run the demo from the repository's root (where go run ./cmd/portcullis works), or name the example's folder with --example DIR", pol, errors.Unwrap(err))
	}
	creds, err := demo.LoadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("the example's demo credentials: %w", err)
	}
	snap, err := policy.Load(pol, policy.LoadOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("the example's policy does not validate:\n%w", err)
	}
	if snap.KeyStore() == nil || snap.KeysAPI() == nil {
		return nil, nil, fmt.Errorf("%s: the self-service demo needs a policy with keys_store and keys_api (as examples/self-service has)", pol)
	}
	return creds, snap, nil
}

func binDirOrHint() string {
	if b := pgtemp.BinDir(); b != "" {
		return b
	}
	return "(none found)"
}

// prepareDatabase creates the demo's database and migrates its schema.
func prepareDatabase(ctx context.Context, pg *pgtemp.Cluster, progress io.Writer) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dsn, err := pg.CreateDatabase(ctx, "portcullis")
	if err != nil {
		return "", fmt.Errorf("creating the demo's database: %w", err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	v, err := store.Migrate(ctx, pool)
	if err != nil {
		return "", fmt.Errorf("migrating the demo's database: %w", err)
	}
	fmt.Fprintf(progress, "demo: PostgreSQL on 127.0.0.1:%d in %s, schema at version %d\n", pg.Port(), pg.Dir(), v)
	return dsn, nil
}

// addrs are the listeners the server reported in its serving line.
type addrs struct{ grpc, admin, http, keysAPI string }

// running is a server started by the demo; done yields Run's result.
type running struct {
	done chan error
}

// startServer starts the server in this process on the example, logging
// into logPath (and warnings on progress too), and returns the addresses
// it serves on and the function that stops it.
func startServer(ctx context.Context, cfg Config, pol, logPath string, progress io.Writer) (*running, addrs, func(), error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, addrs{}, nil, err
	}
	trusted, err := extauthz.ParseTrustedProxies("127.0.0.0/8,::1/128")
	if err != nil {
		logFile.Close()
		return nil, addrs{}, nil, err
	}
	serving := make(chan addrs, 1)
	log := slog.New(&demoHandler{
		file:    slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: cfg.LogLevel}),
		warn:    slog.NewTextHandler(progress, &slog.HandlerOptions{Level: slog.LevelWarn}),
		serving: serving,
	})
	scfg := server.Config{
		Policy: pol, GRPCAddr: cfg.GRPCAddr, AdminAddr: cfg.AdminAddr, HTTPAddr: cfg.HTTPAddr, HTTPMode: extauthz.ModeEnvoy,
		TrustedProxies: trusted, Reflection: true, KeysAPIAddr: cfg.KeysAPIAddr, NoMigrate: true,
		IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second, MaxStreams: 1024, UsageFlush: 2 * time.Second,
		ShutdownTimeout: 5 * time.Second, Version: cfg.Version,
	}
	srv, err := server.New(scfg, log)
	if err != nil {
		logFile.Close()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, addrs{}, nil, fmt.Errorf("%w: another program holds one of the demo's ports: stop it, or give free addresses "+
				"(--grpc-addr, --admin-addr, --http-addr, --keys-api-addr, --signin-addr; 127.0.0.1:0 takes any free port)", err)
		}
		return nil, addrs{}, nil, fmt.Errorf("starting the server: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{done: make(chan error, 1)}
	go func() { r.done <- srv.Run(runCtx) }()
	stop := func() {
		cancel()
		<-r.done
		dctx, dcancel := context.WithTimeout(context.Background(), scfg.ShutdownTimeout)
		defer dcancel()
		srv.Drain(dctx)
		logFile.Close()
	}
	select {
	case a := <-serving:
		return r, a, stop, nil
	case err := <-r.done:
		r.done <- err
		stop()
		return nil, addrs{}, nil, fmt.Errorf("the server stopped at start: %w", err)
	}
}

func listenError(flag string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: %w: give a free address (127.0.0.1:0 takes any free port)", flag, err)
	}
	return fmt.Errorf("%s: %w", flag, err)
}

// demoHandler writes the server's log to its file, warnings and errors to
// the terminal too, and hands the addresses of the serving line over.
type demoHandler struct {
	file, warn slog.Handler
	serving    chan<- addrs
}

func (h *demoHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.file.Enabled(ctx, l) || h.warn.Enabled(ctx, l) || l == slog.LevelInfo
}

func (h *demoHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "portcullis serving" && h.serving != nil {
		var a addrs
		r.Attrs(func(at slog.Attr) bool {
			switch at.Key {
			case "grpc_addr":
				a.grpc = at.Value.String()
			case "admin_addr":
				a.admin = at.Value.String()
			case "http_addr":
				a.http = at.Value.String()
			case "keys_api_addr":
				a.keysAPI = at.Value.String()
			}
			return true
		})
		select {
		case h.serving <- a:
		default:
		}
	}
	var errs []error
	if h.file.Enabled(ctx, r.Level) {
		errs = append(errs, h.file.Handle(ctx, r))
	}
	if h.warn.Enabled(ctx, r.Level) {
		errs = append(errs, h.warn.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

func (h *demoHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &demoHandler{file: h.file.WithAttrs(as), warn: h.warn.WithAttrs(as), serving: h.serving}
}

func (h *demoHandler) WithGroup(name string) slog.Handler {
	return &demoHandler{file: h.file.WithGroup(name), warn: h.warn.WithGroup(name), serving: h.serving}
}

// every calls try every 50 ms until it reports done or fails, ctx ends,
// the server stops, or a minute passes.
func every(ctx context.Context, srv *running, what string, try func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done, err := try(ctx)
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (the server's log says why)", what, ctx.Err())
		case err := <-srv.done:
			srv.done <- err
			return fmt.Errorf("the server stopped while waiting for %s: %w", what, err)
		case <-tick.C:
		}
	}
}

// waitReady waits until the server's /readyz answers 200: its keys loaded.
func waitReady(ctx context.Context, srv *running, readyz string) error {
	return every(ctx, srv, "the server to be ready", func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, readyz, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// client calls the key-management API with the example's management token,
// as the platform's backend does.
type client struct {
	base, token string
}

func (c *client) call(ctx context.Context, method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, path, err)
	}
	return nil
}

// madeKey is a demo key as the API returned it, with its plaintext.
type madeKey struct {
	demoKey
	ID      string `json:"id"`
	Key     string `json:"key"`
	Version int64  `json:"version"`
}

// makeKeys makes the demo keys and returns them with the version of the
// last change.
func makeKeys(ctx context.Context, c *client) ([]madeKey, int64, error) {
	var made []madeKey
	var version int64
	for _, k := range demoKeys {
		var m madeKey
		if err := c.call(ctx, http.MethodPost, "/v1/keys", k, &m); err != nil {
			return nil, 0, fmt.Errorf("making the demo key %q: %w", k.Label, err)
		}
		m.demoKey = k
		made = append(made, m)
		version = max(version, m.Version)
	}
	return made, version, nil
}

// waitApplied waits until the server's mirror has applied version, so the
// keys printed work at once.
func (c *client) waitApplied(ctx context.Context, srv *running, version int64) error {
	return every(ctx, srv, "the demo keys to reach the server's mirror", func(ctx context.Context) (bool, error) {
		var st struct {
			Version int64 `json:"version"`
		}
		if err := c.call(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return false, nil
		}
		return st.Version >= version, nil
	})
}

// signInHandler answers GET /<name> of a demo user with a redirect to a
// fresh one-time sign-in link of the token page (POST /v1/sessions with the
// management token, as a platform's "API keys" settings page does), so a
// printed link keeps working for as long as the demo runs.
func signInHandler(c *client, keysAPI string) http.Handler {
	mux := http.NewServeMux()
	for _, p := range people {
		mux.HandleFunc("GET /"+p.name, func(w http.ResponseWriter, r *http.Request) {
			body := map[string]string{"user": p.user}
			if p.tenant != "" {
				body["tenant"] = p.tenant
			}
			var s struct {
				URL string `json:"url"`
			}
			if err := c.call(r.Context(), http.MethodPost, "/v1/sessions", body, &s); err != nil {
				http.Error(w, "the demo could not open a session: "+err.Error(), http.StatusBadGateway)
				return
			}
			if !strings.HasPrefix(s.URL, "/") {
				http.Error(w, "the key API answered an unexpected sign-in link", http.StatusBadGateway)
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, "http://"+keysAPI+s.URL, http.StatusFound)
		})
	}
	return mux
}

// printLinks prints what the newcomer opens and runs, in one write.
func printLinks(out io.Writer, a addrs, signIn string, made []madeKey, token, dsn, pol string) error {
	var w bytes.Buffer
	fmt.Fprintf(&w, "\nPortcullis self-service demo: %s, its keys in a throwaway PostgreSQL.\n", pol)
	fmt.Fprintf(&w, "\nSign in to the token page (each opening makes a fresh one-time session):\n")
	for _, p := range people {
		fmt.Fprintf(&w, "  %-6s http://%s/%-6s  %s, %s\n", p.name, signIn, p.name, p.user, p.about)
	}
	fmt.Fprintf(&w, "\nThe demo keys, checked as a proxy asks (forward-auth, as Envoy's http_service): 200 with the headers the upstream gets, or the deny:\n")
	for _, k := range made {
		bound := "personal"
		if k.Tenant != "" {
			bound = "bound to " + k.Tenant
		}
		fmt.Fprintf(&w, "  # %s: %s's key, %s, tier %s\n", k.Label, k.User, bound, k.Tier)
		fmt.Fprintf(&w, "  curl -i http://%s/v1/models -H 'Authorization: Bearer %s'\n", a.http, k.Key)
	}
	if len(made) == len(demoKeys) {
		fmt.Fprintf(&w, "  # %s's key naming an organization %s is not a member of: 403\n", made[2].User, made[2].User)
		fmt.Fprintf(&w, "  curl -i http://%s/v1/models -H 'Authorization: Bearer %s' -H 'ib-context: org-acme'\n", a.http, made[2].Key)
	}
	fmt.Fprintf(&w, "\nThe key-management API, as the platform's backend (its management token) and as a signed-in user (a JWT):\n")
	fmt.Fprintf(&w, "  curl -s http://%s/v1/keys -H 'Authorization: Bearer %s'\n", a.keysAPI, token)
	fmt.Fprintf(&w, "  curl -s http://%s/v1/keys -H \"Authorization: Bearer $(go run ./examples/demo-token self-service token carol-admin)\"\n", a.keysAPI)
	fmt.Fprintf(&w, "\nListeners: ext_authz gRPC %s (reflection on), forward-auth %s, admin %s, key API and token page %s\n",
		a.grpc, a.http, a.admin, a.keysAPI)
	fmt.Fprintf(&w, "The CLI on the same database:\n  export PORTCULLIS_DATABASE_URL='%s'\n  go run ./cmd/portcullis keys list --policy %s\n", dsn, pol)
	fmt.Fprintf(&w, "\nCtrl-C stops the demo and removes the database and every file it made.\n")
	_, err := out.Write(w.Bytes())
	return err
}
