package api

// This file holds the token page's sessions (CONTRACT.md §8): a management
// token opens a one-time code for a user, the page trades it for an
// httpOnly cookie and a CSRF token, and the session acts as that user.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
	"github.com/portcullis/portcullis/store"
)

const (
	// SessionCookie is the token page's session cookie.
	SessionCookie = "portcullis_session"
	// CSRFHeader must carry the session's CSRF token on every cookie call.
	CSRFHeader = "X-CSRF-Token"
	// codeLife is how long a one-time code may wait to be exchanged.
	codeLife = 5 * time.Minute
	// sessionLife is how long a session lasts.
	sessionLife = 8 * time.Hour

	reasonCSRF           reason.Code = "csrf"
	reasonInvalidSession reason.Code = "invalid_session"
)

// secret returns 32 random bytes, base64url: a code, a cookie, a CSRF token.
func secret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

type openBody struct {
	User   *string `json:"user"`
	Tenant *string `json:"tenant"`
}

// openSession is POST /v1/sessions: a management token opens a one-time
// code for one of the platform's users.
func (h *Handler) openSession(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.manager == "" {
		return forbiddenf("only a management token may open a session")
	}
	if len(p.snap.KeysAPI().Tiers()) == 0 {
		return badf("the policy's keys_api has no self_service: users may not manage keys, so there is no page to open")
	}
	var b openBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	user := deref(b.User)
	if user == "" {
		return badf("user: required: the signed-in user the page acts for")
	}
	if err := checkUser(p.dir, user); err != nil {
		return err
	}
	tenant := deref(b.Tenant)
	if tenant != "" {
		canon, ok := p.dir.Canonical(tenant)
		switch {
		case !ok:
			return badf("tenant: %q is not a tenant of the policy or the directory", tenant)
		case !p.dir.IsMember(canon, user):
			return badf("tenant: %q is not a member of %q", user, tenant)
		}
		tenant = canon
	}
	code, err := secret()
	if err != nil {
		return err
	}
	expires := h.cfg.Now().UTC().Add(codeLife).Truncate(time.Second)
	if err := h.cfg.Store.OpenCode(r.Context(), keys.DigestOf(code), user, tenant, p.by(), expires); err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "session opened", "by", p.by(), "user", user, "tenant", tenant)
	return writeJSON(w, http.StatusCreated, map[string]any{"url": "/#code=" + code, "expires_at": expires})
}

type exchangeBody struct {
	Code *string `json:"code"`
}

// exchange is POST /v1/sessions/exchange: the page trades a code for the
// session cookie and its CSRF token.
func (h *Handler) exchange(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, reasonCSRF, "a session is opened only by the token page itself")
		return
	}
	var b exchangeBody
	if err := decode(r, &b, false); err != nil {
		h.fail(w, r, err)
		return
	}
	code := deref(b.Code)
	if code == "" || len(code) > 100 {
		writeError(w, http.StatusUnauthorized, reasonInvalidSession, "the sign-in link is not valid: open the token page again from your account")
		return
	}
	cookie, err1 := secret()
	csrf, err2 := secret()
	if err := errors.Join(err1, err2); err != nil {
		h.fail(w, r, err)
		return
	}
	now := h.cfg.Now().UTC().Truncate(time.Second)
	s, err := h.cfg.Store.Exchange(r.Context(), keys.DigestOf(code), keys.DigestOf(cookie), keys.DigestOf(csrf), now, sessionLife)
	if errors.Is(err, store.ErrNoSession) {
		writeError(w, http.StatusUnauthorized, reasonInvalidSession,
			"the sign-in link was used already or has expired: open the token page again from your account")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: cookie, Path: "/", Expires: s.ExpiresAt, MaxAge: int(sessionLife / time.Second),
		HttpOnly: true, Secure: h.secureCookie(r), SameSite: http.SameSiteStrictMode})
	h.cfg.Log.InfoContext(r.Context(), "session started", "user", s.User, "tenant", s.Tenant)
	if err := writeJSON(w, http.StatusOK, map[string]any{"user": s.User, "tenant": optional(s.Tenant), "expires_at": s.ExpiresAt, "csrf_token": csrf}); err != nil {
		h.fail(w, r, err)
	}
}

// logout is POST /v1/sessions/logout: the session ends on the server.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.session == nil {
		return badf("only a token page session can be logged out")
	}
	if err := h.cfg.Store.EndSession(r.Context(), *p.session); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: h.secureCookie(r), SameSite: http.SameSiteStrictMode})
	h.cfg.Log.InfoContext(r.Context(), "session ended", "user", p.user)
	return writeJSON(w, http.StatusOK, map[string]any{"ended": true})
}

// whoami is GET /v1/sessions/current: what the page shows and offers the
// signed-in user.
func (h *Handler) whoami(w http.ResponseWriter, r *http.Request, p *principal) error {
	if p.session == nil {
		return badf("only a token page session has a current session")
	}
	api := p.snap.KeysAPI()
	var maxLife *string
	if life := p.snap.KeyLifetime(); life > 0 {
		s := formatDays(life)
		maxLife = &s
	}
	type tierInfo struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	tiers := []tierInfo{}
	for _, t := range api.Tiers() {
		tiers = append(tiers, tierInfo{t, p.snap.TierDescription(t)})
	}
	type tenantInfo struct {
		ID    string `json:"id"`
		Role  string `json:"role"`
		Admin bool   `json:"admin"` // manages every key bound to it
	}
	tenants := []tenantInfo{}
	for _, t := range p.tenants {
		role, _ := p.dir.Role(t, p.user)
		tenants = append(tenants, tenantInfo{t, role, slices.Contains(p.adminOf, t)})
	}
	// The wallets the user may read: their personal context's, and those
	// of the tenants they manage the keys of (credits: none when the
	// policy meters nothing, or the tenant has no wallet).
	wallets := []walletObject{}
	if p.snap.Metered() {
		for _, t := range append([]string{p.user}, p.adminOf...) {
			switch wal, err := h.cfg.Store.GetWallet(r.Context(), t); {
			case err == nil:
				wallets = append(wallets, walletOf(wal))
			case !errors.Is(err, store.ErrNoWallet):
				return err
			}
		}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"user": p.user, "tenant": optional(p.sessionTenant), "expires_at": p.sessionExpires,
		"tenants": p.tenants, "tiers": api.Tiers(), "max_lifetime": maxLife, "tier_info": tiers, "memberships": tenants,
		"metered": p.snap.Metered(), "wallets": wallets})
}

// formatDays writes d as the policy does: "365d", or Go's form for less
// than a day.
func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strings.TrimSuffix(time.Duration(d/(24*time.Hour)).String(), "ns") + "d"
	}
	return d.String()
}

// sessionPrincipal resolves a cookie call: the session must be live, the
// request must come from the page's own origin, and it must carry the
// session's CSRF token.
func (h *Handler) sessionPrincipal(r *http.Request, c *http.Cookie, snap *policy.Snapshot) (*principal, int, reason.Code, string) {
	if !sameOrigin(r) {
		return nil, http.StatusForbidden, reasonCSRF, "a cross-site request: calls with the session cookie come only from the token page"
	}
	if len(c.Value) > 100 {
		return nil, http.StatusUnauthorized, reasonInvalidSession, "the session is not valid: open the token page again"
	}
	d := keys.DigestOf(c.Value)
	s, err := h.cfg.Store.Session(r.Context(), d, h.cfg.Now())
	switch {
	case errors.Is(err, store.ErrNoSession):
		return nil, http.StatusUnauthorized, reasonInvalidSession, "the session has ended or expired: open the token page again"
	case err != nil:
		return nil, http.StatusServiceUnavailable, "store_unavailable", "the key store cannot be reached"
	}
	got := keys.DigestOf(r.Header.Get(CSRFHeader))
	if r.Header.Get(CSRFHeader) == "" || subtle.ConstantTimeCompare(got.Bytes(), s.CSRF.Bytes()) != 1 {
		return nil, http.StatusForbidden, reasonCSRF, "the " + CSRFHeader + " header is missing or not this session's"
	}
	p, status, code, msg := h.userPrincipal(snap, s.User, false)
	if p != nil {
		p.session, p.sessionTenant, p.sessionExpires = &d, s.Tenant, s.ExpiresAt
	}
	return p, status, code, msg
}

// sameOrigin reports whether a browser request comes from the page's own
// origin: its Origin header (browsers send it on every POST, PATCH and
// DELETE, and on cross-origin GETs) is absent or names this very host
// (the Host the request was sent to; "null" and other schemes never).
// Sec-Fetch-Site, where sent, must not say cross-site.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	// The host, not the scheme: behind a proxy that terminates TLS the
	// page is https while this listener sees http.
	return strings.EqualFold(u.Host, r.Host)
}

// secureCookie reports whether the session cookie must be Secure: under
// TLS here, or when the page itself is https (behind a proxy that
// terminates TLS).
func (h *Handler) secureCookie(r *http.Request) bool {
	return h.cfg.Secure || r.TLS != nil || strings.HasPrefix(r.Header.Get("Origin"), "https://")
}
