package api

// This file holds the handler: routes, who is calling, answers and errors.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/authn"
	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
	"github.com/portcullis/portcullis/store"
)

// Mirror is what the API reads of this replica's mirror of the store.
type Mirror interface {
	Version() int64
	Connected() bool
	Directory() directory.Set // tenants, members and user states as mirrored now
	Wait(ctx context.Context, version int64) error
	Loaded() bool
	LoadedC() <-chan struct{} // closed once the first snapshot is in
}

// Config is what a Handler works with.
type Config struct {
	Store  *store.Store
	Mirror Mirror
	Usage  *store.Usage            // this replica's unflushed counts (may be nil)
	Policy func() *policy.Snapshot // the policy serving now
	Log    *slog.Logger            // one line per change; never a secret
	Now    func() time.Time        // default time.Now
	Secure bool                    // the listener serves TLS (cookies are Secure)
}

// Handler serves the key-management API. It is safe for concurrent use.
type Handler struct {
	cfg    Config
	tokens *authn.Tokens
	mux    *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg, tokens: authn.NewTokens(10_000, 10_000, 10*time.Second), mux: http.NewServeMux()}
	routes := map[string]http.Handler{
		"POST /v1/keys":                              h.authenticated(h.create),
		"GET /v1/keys":                               h.authenticated(h.list),
		"GET /v1/keys/{id}":                          h.authenticated(h.get),
		"PATCH /v1/keys/{id}":                        h.authenticated(h.patch),
		"POST /v1/keys/{id}/refresh":                 h.authenticated(h.refresh),
		"DELETE /v1/keys/{id}":                       h.authenticated(h.delete),
		"POST /v1/keys/revoke":                       h.authenticated(h.revokeAll),
		"GET /v1/keys/{id}/usage":                    h.authenticated(h.usage),
		"PUT /v1/tenants/{tenant}":                   h.authenticated(h.putTenant),
		"GET /v1/tenants/{tenant}":                   h.authenticated(h.getTenant),
		"GET /v1/tenants":                            h.authenticated(h.listTenants),
		"DELETE /v1/tenants/{tenant}":                h.authenticated(h.deleteTenant),
		"PUT /v1/tenants/{tenant}/members/{user}":    h.authenticated(h.putMember),
		"DELETE /v1/tenants/{tenant}/members/{user}": h.authenticated(h.deleteMember),
		"PUT /v1/tenants/{tenant}/members":           h.authenticated(h.replaceMembers),
		"GET /v1/tenants/{tenant}/members":           h.authenticated(h.listMembers),
		"PUT /v1/wallets/{tenant}":                   h.authenticated(h.putWallet),
		"GET /v1/wallets/{tenant}":                   h.authenticated(h.getWallet),
		"DELETE /v1/wallets/{tenant}":                h.authenticated(h.deleteWallet),
		"POST /v1/wallets/{tenant}/grants":           h.authenticated(h.grant),
		"GET /v1/usage":                              h.authenticated(h.usageRows),
		"GET /v1/users/{user}":                       h.authenticated(h.getUser),
		"PUT /v1/users/{user}":                       h.authenticated(h.putUser),
		"POST /v1/sessions":                          h.authenticated(h.openSession),
		"POST /v1/sessions/logout":                   h.authenticated(h.logout),
		"GET /v1/sessions/current":                   h.authenticated(h.whoami),
		"POST /v1/sessions/exchange":                 http.HandlerFunc(h.exchange),
		"GET /v1/status":                             http.HandlerFunc(h.status),
		"GET /v1/openapi.json":                       http.HandlerFunc(serveOpenAPI),
		"GET /{$}":                                   http.HandlerFunc(servePage),
		"GET /assets/{name}":                         http.HandlerFunc(servePage),
	}
	for pattern, handler := range routes {
		h.mux.Handle(pattern, handler)
	}
	h.mux.HandleFunc("/", h.unrouted)
	return h
}

// unrouted answers what no route takes: a known path asked with another
// method is a 405 naming the methods it takes (RFC 9110 §15.5.6); any
// other path a 404.
func (h *Handler) unrouted(w http.ResponseWriter, r *http.Request) {
	// The methods whose routes take this path; where one route names the
	// path exactly (POST /v1/keys/revoke), only such routes count, not
	// those whose wildcard would also match it (GET /v1/keys/{id}).
	var exact, wild []string
	for _, m := range []string{"DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"} {
		probe := r.Clone(r.Context())
		probe.Method = m
		switch _, pattern := h.mux.Handler(probe); {
		case pattern == "/" || pattern == "":
		case strings.Contains(pattern, "{"):
			wild = append(wild, m)
		default:
			exact = append(exact, m)
		}
	}
	allow := exact
	if len(allow) == 0 {
		allow = wild
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no such call: see /v1/openapi.json")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this call takes "+strings.Join(allow, ", ")+": see /v1/openapi.json")
}

// ServeHTTP answers one call. Every answer is JSON and is never cached.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// principal is who a call acts as.
type principal struct {
	manager string // a management token's id; "" for a user
	user    string
	tenants []string // the tenants the user is a member of (policy and store)
	adminOf []string // the tenants whose every key they manage: an admin group's member, or a manage_keys role
	snap    *policy.Snapshot
	dir     policy.Tenants // the policy's tenants with the store's directory, as of the call

	// A token page session: its cookie's digest, the tenant it was
	// opened for and when it ends.
	session        *keys.Digest
	sessionTenant  string
	sessionExpires time.Time
}

// by names the principal in the change log and the audit line.
func (p *principal) by() string {
	if p.manager != "" {
		return "management:" + p.manager
	}
	return "user:" + p.user
}

// scope is every key the principal may manage.
func (p *principal) scope() store.Scope {
	if p.manager != "" {
		return store.Scope{All: true}
	}
	return store.Scope{User: p.user, Tenants: p.adminOf}
}

// may reports whether the principal manages k: theirs, or bound to a
// tenant they administer (not another member's unbound key).
func (p *principal) may(k store.Key) bool {
	return p.manager != "" || k.User == p.user || p.tenantAdmin(k)
}

// relation says who the principal is to k, for the disabled_by it leaves
// when it disables k: the platform (a management token), the key's owner,
// or an admin of its tenant.
func (p *principal) relation(k store.Key) string {
	switch {
	case p.manager != "":
		return store.DisabledByPlatform
	case k.User == p.user:
		return store.DisabledByOwner
	}
	return store.DisabledByTenantAdmin
}

// tenantAdmin reports whether the principal administers k's tenant.
func (p *principal) tenantAdmin(k store.Key) bool {
	return k.Tenant != "" && slices.Contains(p.adminOf, k.Tenant)
}

// adminOf returns the tenants user manages every key of: those they are a
// member of when their token is in an admin group (admin false for a
// session, which has no token), and those where their role manages keys.
func adminOf(dir policy.Tenants, user string, tenants []string, adminGroup bool) []string {
	var out []string
	for _, t := range tenants {
		if adminGroup || dir.ManagesKeys(t, user) {
			out = append(out, t)
		}
	}
	return out
}

// mayEnable refuses to enable k (disabled) when a tenant admin or the
// platform disabled it and the principal is neither a management token nor
// an admin of k's tenant, and when k is bound to a tenant its user is no
// longer a member of.
func (p *principal) mayEnable(k store.Key) error {
	if (k.DisabledBy == store.DisabledByTenantAdmin || k.DisabledBy == store.DisabledByPlatform) &&
		p.manager == "" && !p.tenantAdmin(k) {
		who := "an admin of its tenant"
		if k.DisabledBy == store.DisabledByPlatform {
			who = "the platform"
		}
		return forbiddenf("disabled: %s disabled this key; only an admin of its tenant or the platform may enable it", who)
	}
	return member(p.dir, k.Tenant, k.User)
}

// authenticated resolves the caller (401 when it cannot), then runs f; an
// error f returns becomes the answer.
func (h *Handler) authenticated(f func(http.ResponseWriter, *http.Request, *principal) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.caughtUp(r); err != nil {
			h.fail(w, r, err)
			return
		}
		p, status, code, msg := h.principal(r)
		if p == nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-keys"`)
			}
			writeError(w, status, code, msg)
			return
		}
		if err := f(w, r, p); err != nil {
			h.fail(w, r, err)
		}
	})
}

// caughtUp waits, when the policy keeps its directory in the store, until
// this replica's mirror holds every change the store has committed (at
// most 2 s), so that who may do what is decided on what the caller, or
// another replica, changed a moment ago: a member added through one
// replica may make a key through another at once.
//
// Before the mirror's first snapshot (the schema may not be migrated yet)
// every call waits for it, as long, and is then answered 503.
func (h *Handler) caughtUp(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if !h.cfg.Mirror.Loaded() {
		select {
		case <-h.cfg.Mirror.LoadedC():
		case <-ctx.Done():
			return errNotLoaded
		}
	}
	if !h.cfg.Policy().Directory() {
		return nil
	}
	v, err := h.cfg.Store.Version(ctx)
	if err != nil {
		return err
	}
	if err := h.cfg.Mirror.Wait(ctx, v); err != nil {
		return fmt.Errorf("this replica has not caught up with the store (version %d of %d): %w", h.cfg.Mirror.Version(), v, err)
	}
	return nil
}

// principal reads Authorization: Bearer <management token or user JWT>,
// or else the token page's session cookie. When it cannot, it returns the
// status, reason and message to answer with.
func (h *Handler) principal(r *http.Request) (*principal, int, reason.Code, string) {
	snap := h.cfg.Policy()
	api := snap.KeysAPI()
	raw := strings.TrimSpace(r.Header.Get("Authorization"))
	if raw == "" {
		if c, err := r.Cookie(SessionCookie); err == nil && api != nil {
			return h.sessionPrincipal(r, c, snap)
		}
		return unauthorized(reason.MissingCredential)
	}
	tok, ok := authn.Bearer(raw)
	if !ok || tok == "" || api == nil {
		return unauthorized(reason.InvalidToken)
	}
	if id, ok := api.Manager(tok); ok {
		return &principal{manager: id, snap: snap, dir: snap.Tenants(h.cfg.Mirror.Directory())}, 0, "", ""
	}
	if !authn.LooksLikeJWT(tok) {
		return unauthorized(reason.InvalidToken)
	}
	t, code := snap.VerifyToken(r.Context(), h.tokens, tok, h.cfg.Now())
	switch {
	case code != "":
		return unauthorized(code)
	case !api.SelfService(t.Issuer().ID()) || t.User() == "":
		return unauthorized(reason.InvalidToken)
	}
	return h.userPrincipal(snap, t.User(), api.Admin(t))
}

// userPrincipal is a self-service user (a JWT's subject or a session's
// user) as of now: their tenants and the ones they administer, read live;
// a user the directory holds disabled is refused.
func (h *Handler) userPrincipal(snap *policy.Snapshot, user string, adminGroup bool) (*principal, int, reason.Code, string) {
	dir := snap.Tenants(h.cfg.Mirror.Directory())
	if dir.UserDisabled(user) {
		return nil, http.StatusForbidden, reason.UserDisabled, "your account is disabled on this platform"
	}
	tenants := dir.TenantsOf(user)
	return &principal{user: user, tenants: tenants, adminOf: adminOf(dir, user, tenants, adminGroup), snap: snap, dir: dir}, 0, "", ""
}

func unauthorized(code reason.Code) (*principal, int, reason.Code, string) {
	return nil, http.StatusUnauthorized, code, code.Message()
}

// Errors a call returns that are the caller's fault, with their status
// and reason.
var (
	errForbidden = errors.New("forbidden")
	errNotFound  = errors.New("no such key")
)

func forbiddenf(format string, args ...any) error {
	return errors.Join(errForbidden, badMessage(format, args...))
}

type message string

func (m message) Error() string { return string(m) }

func badMessage(format string, args ...any) message { return message(fmt.Sprintf(format, args...)) }

// fail answers err: the caller's mistakes with their status, a store
// failure as 503.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errBadRequest):
		writeError(w, http.StatusBadRequest, "bad_request", strings.TrimPrefix(err.Error(), errBadRequest.Error()+": "))
	case errors.Is(err, errForbidden):
		writeError(w, http.StatusForbidden, "forbidden", lastLine(err))
	case errors.Is(err, errNotFound), errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such key")
	case errors.Is(err, store.ErrNoTenant), errors.Is(err, errNoTenant):
		writeError(w, http.StatusNotFound, "not_found", "no such tenant")
	case errors.Is(err, errNoUser):
		writeError(w, http.StatusNotFound, "not_found", "no such user")
	case errors.Is(err, store.ErrNotMember):
		writeError(w, http.StatusNotFound, "not_found", "no such membership")
	case errors.Is(err, errNoWallet), errors.Is(err, store.ErrNoWallet):
		writeError(w, http.StatusNotFound, "not_found", "no such wallet")
	case errors.Is(err, errNoCredits):
		writeError(w, http.StatusNotFound, "not_found", errNoCredits.Error())
	case errors.Is(err, errNoDirectory):
		writeError(w, http.StatusNotFound, "not_found", errNoDirectory.Error())
	case errors.Is(err, store.ErrConflict):
		msg := "the key id is taken"
		if s := strings.TrimPrefix(err.Error(), store.ErrConflict.Error()+": "); s != err.Error() {
			msg = s
		}
		writeError(w, http.StatusConflict, "conflict", msg)
	case errors.Is(err, store.ErrLimit):
		writeError(w, http.StatusConflict, "limit_reached", strings.TrimPrefix(err.Error(), store.ErrLimit.Error()+": ")+" reached")
	case errors.Is(err, errEncode):
		h.cfg.Log.ErrorContext(r.Context(), "key API answer not encoded", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		writeError(w, http.StatusInternalServerError, "internal", "the answer could not be encoded; report this to the platform's operators")
	case errors.Is(err, errNotLoaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", errNotLoaded.Error())
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the call was cancelled")
	default:
		h.cfg.Log.ErrorContext(r.Context(), "key store call failed", "method", r.Method, "path", r.URL.Path, "error", err.Error())
		writeError(w, http.StatusServiceUnavailable, "store_unavailable", "the key store cannot be reached; nothing was changed")
	}
}

// errNotLoaded answers a call made before this replica read the key store.
var errNotLoaded = errors.New("this replica is starting and has not read the key store yet; nothing was changed: retry in a second")

func lastLine(err error) string {
	s := err.Error()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// errEncode marks an answer that could not be encoded: nothing of it was
// written, and the call answers 500.
var errEncode = errors.New("the answer could not be encoded")

// writeJSON encodes v whole before it writes anything, then the status and
// the body. When v cannot be encoded (a time past year 9999, a value JSON
// has no form for) it writes nothing and returns an error wrapping
// errEncode, which fail turns into a 500: never a status with an empty or
// truncated body.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", errEncode, err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the status is out: a failed write is the client's connection going
	return nil
}

// writeCreated answers v, 201 when the call created what it names, else
// 200.
func writeCreated(w http.ResponseWriter, created bool, v any) error {
	if created {
		return writeJSON(w, http.StatusCreated, v)
	}
	return writeJSON(w, http.StatusOK, v)
}

// writeError answers an error; its body, two strings, always encodes.
func writeError(w http.ResponseWriter, status int, code reason.Code, msg string) {
	_ = writeJSON(w, status, map[string]string{"error": msg, "reason": string(code)})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	if err := writeJSON(w, http.StatusOK, map[string]any{"version": h.cfg.Mirror.Version(), "connected": h.cfg.Mirror.Connected()}); err != nil {
		h.fail(w, r, err)
	}
}
