package api

// This file holds the calls on keys: create, list, get, change, refresh,
// delete one, delete all, usage.

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// keyObject is a key as answers show it: never the plaintext (but where
// the answer says so), never the digest.
type keyObject struct {
	ID          string     `json:"id"`
	Label       string     `json:"label"`
	Description string     `json:"description"`
	User        *string    `json:"user"`
	Tenant      *string    `json:"tenant"`
	Tier        string     `json:"tier"`
	Start       string     `json:"start"`
	CreatedAt   time.Time  `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	Disabled    bool       `json:"disabled"`
	DisabledBy  *string    `json:"disabled_by"` // owner, tenant_admin, platform; null when enabled
	RateLimit   *limitBody `json:"rate_limit"`  // the key's own; null: its tenant's plan
	State       string     `json:"state"`
}

// limitBody is a rate limit as bodies write it.
type limitBody struct {
	RequestsPerUnit int64  `json:"requests_per_unit"`
	Unit            string `json:"unit"`
}

func limitObject(l keys.RateLimit) *limitBody {
	if l.PerUnit == 0 {
		return nil
	}
	return &limitBody{RequestsPerUnit: int64(l.PerUnit), Unit: strings.ToLower(l.Unit.String())}
}

// rateLimit checks a key's own rate limit: only the platform and admins of
// the key's tenant give one (a user may not raise their own), and the
// policy must define plans (without them no limit is handed over).
func rateLimit(p *principal, tenant string, b *limitBody) (keys.RateLimit, error) {
	if p.manager == "" && (tenant == "" || !slices.Contains(p.adminOf, tenant)) {
		return keys.RateLimit{}, forbiddenf("rate_limit: only the platform or an admin of the key's tenant sets a key's rate limit")
	}
	if len(p.snap.Plans()) == 0 {
		return keys.RateLimit{}, badf("rate_limit: the policy defines no plans, so no rate limit is handed to the proxy")
	}
	l, err := policy.LimitOf(b.RequestsPerUnit, b.Unit)
	if err != nil {
		return l, badf("rate_limit.%v", err)
	}
	return l, nil
}

// withSecret is a key object with the new plaintext and the change's version.
type withSecret struct {
	keyObject
	Key     string `json:"key,omitempty"`
	Version int64  `json:"version"`
}

func object(k store.Key, now time.Time) keyObject {
	o := keyObject{ID: k.ID, Label: k.Label, Description: k.Description, Tier: k.Tier, Start: k.Start,
		CreatedAt: k.CreatedAt, Disabled: k.Disabled, DisabledBy: optional(k.DisabledBy), RateLimit: limitObject(k.Limit), State: keys.StateActive,
		User: optional(k.User), Tenant: optional(k.Tenant), ExpiresAt: optionalTime(k.ExpiresAt), LastUsedAt: optionalTime(k.LastUsedAt)}
	switch {
	case k.Disabled:
		o.State = keys.StateDisabled
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		o.State = keys.StateExpired
	}
	return o
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

type createBody struct {
	Label       *string    `json:"label"`
	Description *string    `json:"description"`
	Tier        *string    `json:"tier"`
	Tenant      *string    `json:"tenant"`
	User        *string    `json:"user"`
	ID          *string    `json:"id"`
	ExpiresAt   *string    `json:"expires_at"`
	ExpiresIn   *string    `json:"expires_in"`
	RateLimit   *limitBody `json:"rate_limit"`
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, p *principal) error {
	var b createBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	now := h.cfg.Now().UTC().Truncate(time.Millisecond)
	nk, err := h.newKey(p, &b, now)
	if err != nil {
		return err
	}
	plain, err := keys.New(keys.DefaultPrefix)
	if err != nil {
		return err
	}
	nk.Digest, nk.Start = keys.DigestOf(plain), plain[:12]
	k, err := h.cfg.Store.Create(r.Context(), nk, h.limits(p))
	if err != nil {
		return err
	}
	h.audit(r, p, "create", k)
	return writeJSON(w, http.StatusCreated, withSecret{object(k, now), plain, k.Version})
}

// newKey checks a create's body against who is calling and the policy.
func (h *Handler) newKey(p *principal, b *createBody, now time.Time) (store.NewKey, error) {
	k := store.NewKey{CreatedBy: p.by(), CreatedAt: now, Label: deref(b.Label), Description: deref(b.Description)}
	if err := checkText("label", k.Label, 100, false); err != nil {
		return k, err
	}
	if err := checkText("description", k.Description, 1000, true); err != nil {
		return k, err
	}
	var err error
	if k.Tier, err = h.tier(p, deref(b.Tier)); err != nil {
		return k, err
	}
	if k.User, err = h.user(p, b.User); err != nil {
		return k, err
	}
	if k.Tenant, err = h.tenant(p, deref(b.Tenant)); err != nil {
		return k, err
	}
	if k.User == "" && k.Tenant == "" {
		return k, badf("a key needs a user or a tenant")
	}
	if err := member(p.dir, k.Tenant, k.User); err != nil {
		return k, err
	}
	if k.ID, err = newID(b.ID); err != nil {
		return k, err
	}
	if b.ID != nil && p.manager == "" {
		// A user's chosen id would be an oracle (taken by someone, or not)
		// and could squat ids the platform means to use.
		return k, forbiddenf("id: only the platform chooses key ids; leave id out and one is made for you")
	}
	exp, err := expiry(b.ExpiresAt, b.ExpiresIn, now)
	if err != nil {
		return k, err
	}
	if b.RateLimit != nil {
		if k.Limit, err = rateLimit(p, k.Tenant, b.RateLimit); err != nil {
			return k, err
		}
	}
	k.ExpiresAt, err = h.lifetime(p, exp, now)
	return k, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (h *Handler) tier(p *principal, tier string) (string, error) {
	switch {
	case tier == "":
		return "", badf("tier: required")
	case !p.snap.HasTier(tier):
		return "", badf("tier: %q is not a tier of the policy", tier)
	case p.manager == "" && !p.snap.KeysAPI().UserMayGive(tier):
		return "", forbiddenf("tier: you may not give a key the tier %q", tier)
	}
	return tier, nil
}

func (h *Handler) user(p *principal, user *string) (string, error) {
	if p.manager == "" {
		if user != nil && *user != p.user {
			return "", forbiddenf("user: you may create keys only for yourself")
		}
		return p.user, nil
	}
	u := deref(user)
	if u == "" {
		return "", nil
	}
	return u, checkUser(p.dir, u)
}

// checkUser holds a user id a management token names to the field rules:
// printable, at most 200 characters, not a tenant's name.
func checkUser(dir policy.Tenants, u string) error {
	if err := checkText("user", u, 200, false); err != nil {
		return err
	}
	if err := notAKey("user", u); err != nil {
		return err
	}
	if dir.NamesTenant(u) {
		return badf("user: %q is a tenant's name; users and tenants share the tenant header", u)
	}
	return nil
}

func (h *Handler) tenant(p *principal, tenant string) (string, error) {
	if tenant == "" {
		return "", nil
	}
	canon, ok := p.dir.Canonical(tenant)
	switch {
	case !ok:
		return "", badf("tenant: %q is not a tenant of the policy or the directory", tenant)
	case p.manager == "" && !p.dir.IsMember(canon, p.user):
		return "", forbiddenf("tenant: you are not a member of %q", tenant)
	}
	return canon, nil
}

// member refuses a key bound to tenant and user unless user is a member of
// tenant now: such a key acts for the tenant only while they are, so
// creating, refreshing or enabling it otherwise would make a key every
// check refuses.
func member(dir policy.Tenants, tenant, user string) error {
	if tenant == "" || user == "" || dir.IsMember(tenant, user) {
		return nil
	}
	return forbiddenf("tenant: %q is not a member of %q: a key bound to a tenant and a user acts only while the user is a member", user, tenant)
}

// lifetime applies the policy's key_lifetime, the default and the longest
// a key may live; exp nil means none was asked for.
func (h *Handler) lifetime(p *principal, exp *time.Time, created time.Time) (time.Time, error) {
	life := p.snap.KeyLifetime()
	switch {
	case exp == nil && life > 0:
		return created.Add(life), nil
	case exp == nil:
		return time.Time{}, nil
	case life > 0 && exp.After(created.Add(life)):
		return time.Time{}, badf("expires_at: the policy lets a key live at most %s from its creation", formatDays(life))
	}
	return *exp, nil
}

func newID(id *string) (string, error) {
	if id != nil {
		return *id, checkID(*id)
	}
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 16)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", err
		}
		b[i] = alphabet[n.Int64()]
	}
	return "key_" + string(b), nil
}

// limits are the store's share of the policy's key_limit (the policy's own
// keys count too) and the per-user limit.
func (h *Handler) limits(p *principal) store.Limits {
	lim := store.Limits{PerUser: p.snap.KeysAPI().PerUserLimit()}
	if n := p.snap.KeyLimit(); n > 0 {
		lim.Total = max(n-p.snap.Keys().Len(), 0)
		if lim.Total == 0 {
			lim.Total = -1 // the policy's own keys fill the limit
		}
	}
	return lim
}

// audit logs one line per change: who, what, which key, which version.
func (h *Handler) audit(r *http.Request, p *principal, op string, k store.Key) {
	h.cfg.Log.InfoContext(r.Context(), "key changed", "op", op, "key_id", k.ID, "by", p.by(), "version", k.Version,
		"user", k.User, "tenant", k.Tenant, "tier", k.Tier)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	for name := range q {
		if name != "user" && name != "tenant" && name != "page_size" && name != "page_token" {
			return badf("%s is not a parameter of this call", name)
		}
	}
	f := store.Filter{User: q.Get("user"), Tenant: q.Get("tenant")}
	if err := errors.Join(notAKey("user", f.User), notAKey("tenant", f.Tenant)); err != nil {
		return err
	}
	if f.Tenant != "" {
		if canon, ok := p.dir.Canonical(f.Tenant); ok {
			f.Tenant = canon
		}
	}
	// Another user's keys: only within a tenant the caller administers
	// (a tenant admin filtering by member).
	if p.manager == "" && f.User != "" && f.User != p.user && (f.Tenant == "" || !slices.Contains(p.adminOf, f.Tenant)) {
		return forbiddenf("user: you may list only your own keys, and a member's within a tenant you administer")
	}
	size, after, err := paging(q, func(id string) bool { return checkID(id) == nil })
	if err != nil {
		return err
	}
	ks, err := h.cfg.Store.List(r.Context(), p.scope(), f, after, size+1)
	if err != nil {
		return err
	}
	out := struct {
		Keys []keyObject `json:"keys"`
		Next string      `json:"next_page_token"`
	}{Keys: []keyObject{}}
	now := h.cfg.Now()
	for i, k := range ks {
		if i == size {
			out.Next = base64.RawURLEncoding.EncodeToString([]byte(ks[i-1].ID))
			break
		}
		out.Keys = append(out.Keys, object(k, now))
	}
	return writeJSON(w, http.StatusOK, out)
}

// paging reads page_size (1 to 200, default 50) and page_token (the
// opaque token of an earlier answer: what it holds must be what valid says
// a cursor of the listing is).
func paging(q url.Values, valid func(string) bool) (int, string, error) {
	size := 50
	if v := q.Get("page_size"); v != "" {
		n, err := parseInt(v)
		if err != nil || n < 1 || n > 200 {
			return 0, "", badf("page_size: want 1 to 200")
		}
		size = n
	}
	after := ""
	if v := q.Get("page_token"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || !valid(string(b)) {
			return 0, "", badf("page_token: not a token this API gave")
		}
		after = string(b)
	}
	return size, after, nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, p *principal) error {
	k, err := h.managed(r, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, object(k, h.cfg.Now()))
}

// managed returns the key the path names if the principal manages it.
func (h *Handler) managed(r *http.Request, p *principal) (store.Key, error) {
	id := r.PathValue("id")
	if checkID(id) != nil {
		return store.Key{}, errNotFound
	}
	k, err := h.cfg.Store.Get(r.Context(), id)
	if err != nil {
		return k, err
	}
	if !p.may(k) {
		return k, errNotFound
	}
	return k, nil
}

type patchBody struct {
	Label       *string             `json:"label"`
	Description *string             `json:"description"`
	ExpiresAt   nullable[string]    `json:"expires_at"`
	Disabled    *bool               `json:"disabled"`
	RateLimit   nullable[limitBody] `json:"rate_limit"` // null: none (the tenant's plan)
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request, p *principal) error {
	var b patchBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	now := h.cfg.Now().UTC()
	patch := store.Patch{Label: b.Label, Description: b.Description, Disabled: b.Disabled}
	if b.Label != nil {
		if err := checkText("label", *b.Label, 100, false); err != nil {
			return err
		}
	}
	if b.Description != nil {
		if err := checkText("description", *b.Description, 1000, true); err != nil {
			return err
		}
	}
	if b.ExpiresAt.Set {
		var t time.Time
		if !b.ExpiresAt.Null {
			e, err := expiry(&b.ExpiresAt.Value, nil, now)
			if err != nil {
				return err
			}
			t = *e
		}
		patch.ExpiresAt = &t
	}
	lifetime := h.lifetimeCheck(p)
	patch.DisabledBy = p.relation
	if b.RateLimit.Set {
		// Checked against the key's own tenant, inside the change.
		patch.Limit = func(before store.Key) (keys.RateLimit, error) {
			if b.RateLimit.Null {
				// Who may not set a limit may not remove one either.
				_, err := rateLimit(p, before.Tenant, &limitBody{RequestsPerUnit: 1, Unit: "second"})
				return keys.RateLimit{}, err
			}
			return rateLimit(p, before.Tenant, &b.RateLimit.Value)
		}
	}
	patch.Check = func(before, after store.Key) error {
		if b.ExpiresAt.Set {
			if err := lifetime(before, after); err != nil {
				return err
			}
		}

		if before.Disabled && !after.Disabled {
			return p.mayEnable(before)
		}
		return nil
	}
	if id := r.PathValue("id"); checkID(id) != nil {
		return errNotFound
	}
	k, err := h.cfg.Store.Update(r.Context(), r.PathValue("id"), patch, p.by(), p.may)
	if err != nil {
		return err
	}
	h.audit(r, p, "update", k)
	return writeJSON(w, http.StatusOK, withSecret{keyObject: object(k, now), Version: k.Version})
}

// lifetimeCheck refuses an expiry the policy's key_lifetime does not allow
// (never, or past creation plus the lifetime).
func (h *Handler) lifetimeCheck(p *principal) func(before, after store.Key) error {
	life := p.snap.KeyLifetime()
	return func(_, k store.Key) error {
		switch {
		case life > 0 && k.ExpiresAt.IsZero():
			return badf("expires_at: the policy's key_lifetime allows no key that never expires")
		case life > 0 && k.ExpiresAt.After(k.CreatedAt.Add(life)):
			return badf("expires_at: the policy lets a key live at most %s from its creation", formatDays(life))
		}
		return nil
	}
}

type refreshBody struct {
	ExpiresAt *string `json:"expires_at"`
	ExpiresIn *string `json:"expires_in"`
	Overlap   *string `json:"overlap"`
}

func (h *Handler) refresh(w http.ResponseWriter, r *http.Request, p *principal) error {
	var b refreshBody
	if err := decode(r, &b, true); err != nil {
		return err
	}
	now := h.cfg.Now().UTC().Truncate(time.Millisecond)
	ref := store.Refresh{Now: now}
	exp, err := expiry(b.ExpiresAt, b.ExpiresIn, now)
	if err != nil {
		return err
	}
	lifetime := h.lifetimeCheck(p)
	ref.Check = func(before, after store.Key) error {
		if err := member(p.dir, before.Tenant, before.User); err != nil {
			return err
		}
		if exp != nil {
			return lifetime(before, after)
		}
		return nil
	}
	if exp != nil {
		ref.ExpiresAt = exp
	}
	if b.Overlap != nil {
		if ref.Overlap, err = parseLifetime("overlap", *b.Overlap); err != nil {
			return err
		}
	}
	if checkID(r.PathValue("id")) != nil {
		return errNotFound
	}
	plain, err := keys.New(keys.DefaultPrefix)
	if err != nil {
		return err
	}
	ref.Digest, ref.Start = keys.DigestOf(plain), plain[:12]
	k, err := h.cfg.Store.Refresh(r.Context(), r.PathValue("id"), ref, p.by(), p.may)
	if err != nil {
		return err
	}
	h.audit(r, p, "refresh", k)
	return writeJSON(w, http.StatusOK, withSecret{object(k, now), plain, k.Version})
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request, p *principal) error {
	id := r.PathValue("id")
	if checkID(id) != nil {
		return errNotFound
	}
	v, err := h.cfg.Store.Delete(r.Context(), id, p.by(), p.may)
	if err != nil {
		return err
	}
	h.audit(r, p, "delete", store.Key{ID: id, Version: v})
	return writeJSON(w, http.StatusOK, map[string]any{"id": id, "version": v})
}

type revokeBody struct {
	User   *string `json:"user"`
	Tenant *string `json:"tenant"`
}

func (h *Handler) revokeAll(w http.ResponseWriter, r *http.Request, p *principal) error {
	var b revokeBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	f := store.Filter{User: deref(b.User), Tenant: deref(b.Tenant)}
	if f.User == "" && f.Tenant == "" {
		return badf("name a user, a tenant, or both")
	}
	if err := errors.Join(notAKey("user", f.User), notAKey("tenant", f.Tenant)); err != nil {
		return err
	}
	if f.User != "" {
		if err := checkText("user", f.User, 200, false); err != nil {
			return err
		}
	}
	if f.Tenant != "" {
		canon, ok := p.dir.Canonical(f.Tenant)
		if !ok {
			return badf("tenant: %q is not a tenant of the policy or the directory", f.Tenant)
		}
		f.Tenant = canon
	}
	// Another user's keys: only those bound to a tenant the caller
	// administers ("delete all keys of a member").
	if p.manager == "" && f.User != "" && f.User != p.user && (f.Tenant == "" || !slices.Contains(p.adminOf, f.Tenant)) {
		return forbiddenf("user: you may delete only your own keys, and a member's within a tenant you administer")
	}
	ids, v, err := h.cfg.Store.DeleteAll(r.Context(), p.scope(), f, p.by())
	if err != nil {
		return err
	}
	for _, id := range ids {
		h.audit(r, p, "delete", store.Key{ID: id, Version: v})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"revoked": len(ids), "version": v})
}

// usageDays is how far back a key's usage is shown.
const usageDays = 30

func (h *Handler) usage(w http.ResponseWriter, r *http.Request, p *principal) error {
	k, err := h.managed(r, p)
	if err != nil {
		return err
	}
	now := h.cfg.Now().UTC()
	since := now.AddDate(0, 0, -usageDays+1)
	var days []store.Day
	if h.cfg.Usage != nil {
		days, err = h.cfg.Usage.Days(r.Context(), h.cfg.Store, k.ID, since)
	} else {
		days, err = h.cfg.Store.Days(r.Context(), k.ID, since)
	}
	if err != nil {
		return err
	}
	out := struct {
		Allowed  int64       `json:"allowed"`
		Denied   int64       `json:"denied"`
		LastUsed *time.Time  `json:"last_used_at"`
		Days     []store.Day `json:"days"`
	}{LastUsed: optionalTime(k.LastUsedAt), Days: []store.Day{}}
	for _, d := range days {
		out.Allowed, out.Denied = out.Allowed+d.Allowed, out.Denied+d.Denied
		out.Days = append(out.Days, d)
	}
	return writeJSON(w, http.StatusOK, out)
}

func parseInt(s string) (int, error) {
	n := 0
	if s == "" || len(s) > 6 {
		return 0, badf("not a number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, badf("not a number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

// notAKey refuses a minted API key sent where an id belongs (field), so it
// is never stored, logged or echoed as one.
func notAKey(field, v string) error {
	if keys.Minted(v) {
		return badf("%s: this is an API key, not an id: revoke the key if it was shared, and send the id", field)
	}
	return nil
}
