package cache

// This file holds the sources of JWK sets: static, and fetched over HTTP
// with refresh; and the registry sharing fetched sets across policies.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned (wrapped) when an issuer's key set has never
// been fetched successfully, so no token of that issuer can be checked.
var ErrUnavailable = errors.New("JWK set unavailable")

// maxJWKSBytes bounds the size of a fetched JWK set document.
const maxJWKSBytes = 1 << 20

// Source gives the current key set of one issuer. Implementations are safe
// for concurrent use.
type Source interface {
	// KeySet returns the current key set, or an error wrapping
	// ErrUnavailable when there has never been one.
	KeySet(ctx context.Context) (*KeySet, error)
	// Refetch asks for a fresher key set because a token named a key id the
	// current set lacks; it may return the current set unchanged (rate
	// limits, static sources).
	Refetch(ctx context.Context) (*KeySet, error)
}

// Static is a Source whose key set never changes (inline keys or a file,
// which is re-read with the policy).
type Static struct{ set *KeySet }

// NewStatic returns a Static source serving set.
func NewStatic(set *KeySet) *Static { return &Static{set: set} }

// KeySet returns the set; it never fails.
func (s *Static) KeySet(context.Context) (*KeySet, error) { return s.set, nil }

// Refetch returns the set unchanged.
func (s *Static) Refetch(context.Context) (*KeySet, error) { return s.set, nil }

// RemoteOptions tune a Remote. Zero values take the defaults noted.
type RemoteOptions struct {
	Refresh    time.Duration // background refresh period; default 15m
	Retry      time.Duration // retry period after a failed fetch; default 30s (capped at Refresh)
	MinRefetch time.Duration // least time between fetches triggered by unknown kids; default 10s
	Timeout    time.Duration // one fetch; default 10s
	Client     *http.Client  // default: a client with Timeout
	// OnFetch, when set, is called after every fetch attempt, outside any
	// lock, with the address (its password redacted) and the error (nil on
	// success).
	OnFetch func(uri string, err error)
	// Trace, when set, is called as each fetch starts with the context of
	// the check that asked for it (or a background one) and the address
	// (password redacted); it returns the context to fetch in and a
	// function the fetch's end calls with its error (a tracing span).
	Trace func(ctx context.Context, uri string) (context.Context, func(error))
}

func (o RemoteOptions) withDefaults() RemoteOptions {
	if o.Refresh <= 0 {
		o.Refresh = 15 * time.Minute
	}
	if o.Retry <= 0 {
		o.Retry = 30 * time.Second
	}
	o.Retry = min(o.Retry, o.Refresh)
	if o.MinRefetch <= 0 {
		o.MinRefetch = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	// Whatever client is given, a redirect may not leave the origin the
	// fetch was configured with.
	c := *o.Client
	c.CheckRedirect = sameOrigin
	o.Client = &c
	return o
}

// sameOrigin lets a fetch follow a redirect only to the scheme and host
// (with port) of the address it was asked for, as checked when the policy
// was loaded or the discovery document was read: never from https to
// http, never to another host, where an attacker who can answer one
// request (an open redirect, a compromised path) would choose the keys.
// An upgrade from http to https on the same host is followed.
func sameOrigin(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	switch {
	case len(via) >= 10:
		return errors.New("stopped after 10 redirects")
	case first.Scheme == "https" && req.URL.Scheme != "https":
		return fmt.Errorf("refusing a redirect from https to %s (%s): key sets and discovery documents are fetched over https only", req.URL.Scheme, Redacted(req.URL.String()))
	case !strings.EqualFold(req.URL.Host, first.Host):
		return fmt.Errorf("refusing a redirect to another host (%s, not %s): a key set or discovery document is fetched only from the host configured", req.URL.Host, first.Host)
	}
	return nil
}

// Remote is a Source fetched over HTTP. It keeps serving the last good set
// while the IdP is down, refreshes in the background once started, and
// refetches on demand (unknown kid) at most once per MinRefetch. Concurrent
// fetches are collapsed into one, and no lock is held during I/O.
type Remote struct {
	uri     string
	refresh time.Duration // as the policy asked, for the Registry
	shown   string        // uri with any password redacted: the only form ever printed
	opts    RemoteOptions
	// issuer is set for a set found by OpenID Connect discovery: uri is
	// then the issuer's discovery document, which must name issuer
	// exactly, and the set is fetched from the document's jwks_uri.
	issuer  string
	jwksURI atomic.Pointer[string] // the last jwks_uri discovery gave

	set   atomic.Pointer[KeySet]
	tried atomic.Bool

	mu       sync.Mutex
	inflight chan struct{}
	last     time.Time // start of the last fetch
	lastErr  error

	startOnce sync.Once
	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// NewRemote returns a Remote for uri. Nothing is fetched until KeySet,
// Refetch or Start is called.
func NewRemote(uri string, opts RemoteOptions) *Remote {
	return &Remote{uri: uri, shown: Redacted(uri), opts: opts.withDefaults(), stop: make(chan struct{}), done: make(chan struct{})}
}

// NewDiscovered returns a Remote whose key set is found by OpenID Connect
// discovery: each fetch reads <issuer>/.well-known/openid-configuration,
// checks that it names issuer exactly (OpenID Connect Discovery 1.0 §4.3;
// otherwise nothing it says is used), and fetches the set from its
// jwks_uri. A failed fetch of either keeps the last good set.
func NewDiscovered(issuer string, opts RemoteOptions) *Remote {
	r := NewRemote(DiscoveryURL(issuer), opts)
	r.issuer = issuer
	return r
}

// DiscoveryURL returns the address of issuer's discovery document.
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// URI returns the address the set is fetched from (for a discovered set,
// the discovery document's), with any password in it redacted: it is safe
// to log or to use as a metric label.
func (r *Remote) URI() string { return r.shown }

// JWKSURI returns the jwks_uri discovery last gave ("" before, and for a
// set that is not discovered), password redacted.
func (r *Remote) JWKSURI() string {
	if u := r.jwksURI.Load(); u != nil {
		return Redacted(*u)
	}
	return ""
}

// Is reports whether r fetches uri with the given refresh period.
func (r *Remote) Is(uri string, refresh time.Duration) bool {
	return r.issuer == "" && r.uri == uri && r.refresh == refresh
}

// IsDiscovered reports whether r discovers issuer's set with the given
// refresh period.
func (r *Remote) IsDiscovered(issuer string, refresh time.Duration) bool {
	return r.issuer == issuer && r.issuer != "" && r.refresh == refresh
}

// Redacted returns uri with the password of its userinfo replaced by
// "xxxxx" (url.URL.Redacted); a value that does not parse as a URL is
// replaced whole, since it cannot be told what part of it is secret.
func Redacted(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// Tried reports whether at least one fetch has finished, successfully or not.
func (r *Remote) Tried() bool { return r.tried.Load() }

// KeySet returns the current set. When there has never been one it fetches
// (joining a fetch in flight) and waits for the result or ctx.
func (r *Remote) KeySet(ctx context.Context) (*KeySet, error) {
	if s := r.set.Load(); s != nil {
		return s, nil
	}
	r.fetch(ctx, false)
	if s := r.set.Load(); s != nil {
		return s, nil
	}
	return nil, r.unavailable()
}

// Refetch fetches a new set unless one was fetched less than MinRefetch ago,
// and returns the current set afterwards.
func (r *Remote) Refetch(ctx context.Context) (*KeySet, error) {
	r.fetch(ctx, false)
	if s := r.set.Load(); s != nil {
		return s, nil
	}
	return nil, r.unavailable()
}

func (r *Remote) unavailable() error {
	r.mu.Lock()
	err := r.lastErr
	r.mu.Unlock()
	if err == nil {
		return fmt.Errorf("%w: %s: not fetched yet", ErrUnavailable, r.shown)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// fetch starts a fetch, or joins the one in flight, and waits for it or for
// ctx. Without force it does nothing when the last fetch started less than
// MinRefetch ago.
func (r *Remote) fetch(ctx context.Context, force bool) {
	r.mu.Lock()
	if ch := r.inflight; ch != nil {
		r.mu.Unlock()
		wait(ctx, ch)
		return
	}
	if !force && !r.last.IsZero() && time.Since(r.last) < r.opts.MinRefetch {
		r.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	r.inflight = ch
	r.last = time.Now()
	r.mu.Unlock()

	go func() {
		// The fetch runs on its own context so one caller giving up does
		// not fail it for the others waiting (its values, such as the
		// caller's trace, are kept).
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
		end := func(error) {}
		if r.opts.Trace != nil {
			fctx, end = r.opts.Trace(fctx, r.shown)
		}
		set, err := r.get(fctx)
		end(err)
		cancel()
		if err == nil {
			r.set.Store(set)
		}
		r.tried.Store(true)
		r.mu.Lock()
		r.inflight = nil
		r.lastErr = err
		r.mu.Unlock()
		close(ch)
		if r.opts.OnFetch != nil {
			r.opts.OnFetch(r.shown, err)
		}
	}()
	wait(ctx, ch)
}

func wait(ctx context.Context, ch <-chan struct{}) {
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (r *Remote) get(ctx context.Context) (*KeySet, error) {
	uri, shown := r.uri, r.shown
	if r.issuer != "" {
		var err error
		if uri, err = r.discover(ctx); err != nil {
			return nil, err
		}
		shown = Redacted(uri)
	}
	body, err := r.download(ctx, uri, shown, "JWK set", "application/json, application/jwk-set+json")
	if err != nil {
		return nil, err
	}
	set, err := ParseKeySet(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shown, err)
	}
	return set, nil
}

// discover reads the discovery document and returns its jwks_uri.
func (r *Remote) discover(ctx context.Context) (string, error) {
	body, err := r.download(ctx, r.uri, r.shown, "discovery document", "application/json")
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := strictJSON(body, &doc); err != nil {
		return "", fmt.Errorf("discovery document %s: %w", r.shown, err)
	}
	if doc.Issuer != r.issuer {
		return "", fmt.Errorf("discovery document %s names issuer %q, not %q: its keys are not used "+
			"(OpenID Connect Discovery §4.3; check the policy's issuer, it must be the tokens' exact iss)", r.shown, doc.Issuer, r.issuer)
	}
	u, err := url.Parse(doc.JWKSURI)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(r.issuer, "http://"))) {
		return "", fmt.Errorf("discovery document %s: jwks_uri %q is not an absolute https URL", r.shown, Redacted(doc.JWKSURI))
	}
	r.jwksURI.Store(&doc.JWKSURI)
	return doc.JWKSURI, nil
}

// download GETs uri (shown as shown) and returns its body, at most
// maxJWKSBytes.
func (r *Remote) download(ctx context.Context, uri, shown, what, accept string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s %s: %w", what, shown, err)
	}
	req.Header.Set("Accept", accept)
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		// net/http's errors name the URL with its password already
		// stripped.
		return nil, fmt.Errorf("fetching %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s %s: HTTP status %d", what, shown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s %s: %w", what, shown, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("fetching %s %s: document larger than %d bytes", what, shown, maxJWKSBytes)
	}
	return body, nil
}

// Start fetches now and then refreshes in the background every Refresh
// (every Retry while fetches fail) until Close. Calling it again does nothing.
func (r *Remote) Start() {
	r.startOnce.Do(func() { go r.loop() })
}

func (r *Remote) loop() {
	defer close(r.done)
	for {
		r.fetch(context.Background(), true)
		next := r.opts.Refresh
		r.mu.Lock()
		if r.lastErr != nil {
			next = r.opts.Retry
		}
		r.mu.Unlock()
		t := time.NewTimer(next)
		select {
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Close stops the background refresh, if started, and waits for it to end.
func (r *Remote) Close() {
	r.stopOnce.Do(func() { close(r.stop) })
	started := true
	r.startOnce.Do(func() { started = false; close(r.done) })
	if started {
		<-r.done
	}
}

// Registry shares Remote sources between successive policies so that a
// reload does not refetch every JWK set. Loading a policy only asks it for
// Remotes; nothing is shared or started until the policy is published
// (Commit), so a policy that fails to load leaves no trace. It is safe for
// concurrent use.
type Registry struct {
	opts       RemoteOptions
	background bool

	mu      sync.Mutex
	remotes map[string]*Remote // committed: used by the published policy
}

// NewRegistry returns an empty Registry. With background set, each Remote
// is started (refreshed in the background) when it is committed.
func NewRegistry(opts RemoteOptions, background bool) *Registry {
	return &Registry{opts: opts, background: background, remotes: map[string]*Remote{}}
}

func remoteID(issuer, uri string, refresh time.Duration) string {
	return fmt.Sprintf("%s|%s|%s", issuer, uri, refresh)
}

// Remote returns the Remote for uri with the given refresh period: the
// committed one when the published policy uses it already, else a new one,
// neither started nor shared until Commit.
func (g *Registry) Remote(uri string, refresh time.Duration) *Remote {
	return g.get("", uri, refresh, func(opts RemoteOptions) *Remote { return NewRemote(uri, opts) })
}

// Discovered is Remote for the set OpenID Connect discovery finds for
// issuer (NewDiscovered).
func (g *Registry) Discovered(issuer string, refresh time.Duration) *Remote {
	return g.get(issuer, DiscoveryURL(issuer), refresh, func(opts RemoteOptions) *Remote { return NewDiscovered(issuer, opts) })
}

func (g *Registry) get(issuer, uri string, refresh time.Duration, newRemote func(RemoteOptions) *Remote) *Remote {
	g.mu.Lock()
	r, ok := g.remotes[remoteID(issuer, uri, refresh)]
	g.mu.Unlock()
	if ok {
		return r
	}
	opts := g.opts
	if refresh > 0 {
		opts.Refresh = refresh
	}
	r = newRemote(opts)
	r.refresh = refresh
	return r
}

// Commit makes keep the committed Remotes, once the policy that uses them
// is published: new ones are shared (and started, with background), and
// those the policy no longer uses are closed.
func (g *Registry) Commit(keep []*Remote) {
	next := make(map[string]*Remote, len(keep))
	for _, r := range keep {
		next[remoteID(r.issuer, r.uri, r.refresh)] = r
	}
	g.mu.Lock()
	var drop []*Remote
	for id, r := range g.remotes {
		if next[id] != r {
			drop = append(drop, r)
		}
	}
	g.remotes = next
	g.mu.Unlock()
	for _, r := range drop {
		r.Close()
	}
	if g.background {
		for _, r := range keep {
			r.Start()
		}
	}
}

// Close stops every committed Remote.
func (g *Registry) Close() { g.Commit(nil) }
