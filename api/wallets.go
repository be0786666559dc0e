package api

// This file holds the wallets' calls (CONTRACT §11): a tenant's wallet,
// its refill and grants (the platform's), reading it (also its tenant's
// key managers, and for a personal wallet its user), and usage by day,
// tenant, user and key.

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/store"
)

var (
	errNoWallet  = errors.New("no such wallet")
	errNoCredits = errors.New("the policy meters nothing (it has no credits block): wallets are off")
)

// maxUnits bounds a grant's units, either way.
const maxUnits = 1_000_000_000_000

// walletTenant checks the {tenant} of a wallet call and returns the id the
// wallet is kept under: a tenant's canonical id (an alias names its
// tenant's wallet), else the id as written (a user's personal context).
func walletTenant(p *principal, id string) (string, error) {
	if !p.snap.Metered() {
		return "", errNoCredits
	}
	if err := checkTenantID("tenant", id); err != nil {
		return "", err
	}
	if canon, ok := p.dir.Canonical(id); ok {
		return canon, nil
	}
	return id, nil
}

// readsWallet reports whether p may read tenant's wallet and usage: the
// platform, the tenant's key managers, the user whose personal context it
// is.
func readsWallet(p *principal, tenant string) bool {
	return p.manager != "" || slices.Contains(p.adminOf, tenant) || (p.user != "" && p.user == tenant)
}

type refillBody struct {
	Amount int64  `json:"amount"`
	Every  string `json:"every"`
	Day    *int   `json:"day"`
}

type putWalletBody struct {
	Refill nullable[refillBody] `json:"refill"` // null: none
}

// walletObject is a wallet as the API shows it.
type walletObject struct {
	Tenant       string      `json:"tenant"`
	Balance      int64       `json:"balance"`
	Held         int64       `json:"held"`
	Refill       *refillBody `json:"refill"`
	NextRefillAt *time.Time  `json:"next_refill_at"`
	SpentToday   int64       `json:"spent_today"`
	Forfeited    int64       `json:"forfeited"`
	Version      *int64      `json:"version,omitempty"`
}

func walletOf(w store.Wallet) walletObject {
	out := walletObject{Tenant: w.Tenant, Balance: w.Balance, Held: w.Held, SpentToday: w.SpentToday, Forfeited: w.Forfeited,
		NextRefillAt: optionalTime(w.NextRefill)}
	if w.Refill != nil {
		out.Refill = &refillBody{Amount: w.Refill.Amount, Every: w.Refill.Every}
		if w.Refill.Every == "month" {
			day := w.Refill.Day
			out.Refill.Day = &day
		}
	}
	return out
}

// putWallet is PUT /v1/wallets/{tenant}: creates the wallet (balance 0)
// or sets its refill.
func (h *Handler) putWallet(w http.ResponseWriter, r *http.Request, p *principal) error {
	tenant, err := walletTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	if p.manager == "" {
		return forbiddenf("only the platform (a management token) creates wallets and grants credits")
	}
	var b putWalletBody
	if err := decode(r, &b, true); err != nil {
		return err
	}
	var refill *store.Refill
	if b.Refill.Set && !b.Refill.Null {
		rb := b.Refill.Value
		refill = &store.Refill{Amount: rb.Amount, Every: rb.Every}
		switch {
		case rb.Amount < 1 || rb.Amount > maxUnits:
			return badf("refill.amount: want a whole number from 1 to 10^12")
		case rb.Every == "day" && rb.Day != nil:
			return badf("refill.day: only with every: month")
		case rb.Every == "day":
		case rb.Every == "month" && (rb.Day == nil || *rb.Day < 1 || *rb.Day > 28):
			return badf("refill.day: with every: month, want a day of the month from 1 to 28")
		case rb.Every == "month":
			refill.Day = *rb.Day
		default:
			return badf("refill.every: want day or month, got %q", rb.Every)
		}
	}
	wal, created, err := h.cfg.Store.PutWallet(r.Context(), tenant, refill, b.Refill.Set, p.by(), h.cfg.Now().UTC())
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "wallet changed", "op", "put", "tenant", tenant, "by", p.by(), "version", wal.Version, "created", created)
	out := walletOf(wal)
	out.Version = &wal.Version
	return writeCreated(w, created, out)
}

// getWallet is GET /v1/wallets/{tenant}.
func (h *Handler) getWallet(w http.ResponseWriter, r *http.Request, p *principal) error {
	tenant, err := walletTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	if !readsWallet(p, tenant) {
		return errNoWallet
	}
	wal, err := h.cfg.Store.GetWallet(r.Context(), tenant)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, walletOf(wal))
}

// deleteWallet is DELETE /v1/wallets/{tenant}: the tenant is unmetered
// from then on (the policy's unmetered says what that means).
func (h *Handler) deleteWallet(w http.ResponseWriter, r *http.Request, p *principal) error {
	tenant, err := walletTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	if p.manager == "" {
		return forbiddenf("only the platform (a management token) deletes wallets")
	}
	v, err := h.cfg.Store.DeleteWallet(r.Context(), tenant, p.by())
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "wallet changed", "op", "delete", "tenant", tenant, "by", p.by(), "version", v)
	return writeJSON(w, http.StatusOK, map[string]int64{"version": v})
}

type grantBody struct {
	Units          int64   `json:"units"`
	IdempotencyKey string  `json:"idempotency_key"`
	Note           *string `json:"note"`
}

// grant is POST /v1/wallets/{tenant}/grants: adds units (or, negative,
// takes them), once per idempotency key.
func (h *Handler) grant(w http.ResponseWriter, r *http.Request, p *principal) error {
	tenant, err := walletTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	if p.manager == "" {
		return forbiddenf("only the platform (a management token) creates wallets and grants credits")
	}
	var b grantBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	note := ""
	if b.Note != nil {
		note = *b.Note
	}
	switch {
	case b.Units == 0 || b.Units > maxUnits || b.Units < -maxUnits:
		return badf("units: want a whole number, not 0, of at most 10^12 either way")
	case len(b.IdempotencyKey) < 1 || len(b.IdempotencyKey) > 128 || strings.IndexFunc(b.IdempotencyKey, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0:
		return badf("idempotency_key: want 1 to 128 printable ASCII characters (a retry sends the same one)")
	}
	if err := checkText("note", note, 200, true); err != nil {
		return err
	}
	balance, v, replayed, err := h.cfg.Store.Grant(r.Context(), tenant, b.Units, b.IdempotencyKey, note, p.by())
	if err != nil {
		return err
	}
	if !replayed {
		h.cfg.Log.InfoContext(r.Context(), "wallet changed", "op", "grant", "tenant", tenant, "units", b.Units, "by", p.by(), "version", v)
	}
	return writeJSON(w, http.StatusOK, map[string]int64{"balance": balance, "version": v})
}

// usageDefaultDays is the range GET /v1/usage covers without from and to.
const usageDefaultDays = 30

// usageRows is GET /v1/usage: usage by day, tenant, user and key. The
// platform reads any; a user their own rows, and every row of a tenant
// they manage the keys of (the tenant filter set to it).
func (h *Handler) usageRows(w http.ResponseWriter, r *http.Request, p *principal) error {
	q := r.URL.Query()
	for name := range q {
		if !slices.Contains([]string{"tenant", "user", "key", "from", "to", "group_by"}, name) {
			return badf("%s: not a parameter of this call (tenant, user, key, from, to, group_by)", name)
		}
		if len(q[name]) > 1 {
			return badf("%s: given more than once", name)
		}
		if q.Get(name) == "" && name != "group_by" {
			return badf("%s: empty: leave it out to match any", name)
		}
	}
	uq := store.UsageQuery{Tenant: q.Get("tenant"), User: q.Get("user"), Key: q.Get("key"), GroupBy: []string{"date"}}
	if uq.Tenant != "" {
		if err := checkTenantID("tenant", uq.Tenant); err != nil {
			return err
		}
		if canon, ok := p.dir.Canonical(uq.Tenant); ok {
			uq.Tenant = canon
		}
	}
	if uq.User != "" {
		if err := checkTenantID("user", uq.User); err != nil {
			return err
		}
	}
	if uq.Key != "" {
		if err := checkID(uq.Key); err != nil {
			return badf("key: want 1 to 64 of A-Z, a-z, 0-9, _ and -")
		}
	}
	today := h.cfg.Now().UTC().Truncate(24 * time.Hour)
	uq.To, uq.From = today, today.AddDate(0, 0, -usageDefaultDays+1)
	for name, at := range map[string]*time.Time{"from": &uq.From, "to": &uq.To} {
		if v := q.Get(name); v != "" {
			d, err := time.Parse(time.DateOnly, v)
			if err != nil {
				return badf("%s: want a UTC date as YYYY-MM-DD, got %q", name, v)
			}
			*at = d
		}
	}
	if uq.To.Before(uq.From) {
		return badf("to: before from")
	}
	if uq.To.Sub(uq.From) > 366*24*time.Hour {
		return badf("from, to: at most 366 days at once")
	}
	if g, ok := q["group_by"]; ok {
		uq.GroupBy = []string{}
		for f := range strings.SplitSeq(g[0], ",") {
			if g[0] == "" { // one row: everything summed
				break
			}
			if !slices.Contains([]string{"date", "tenant", "user", "key"}, f) {
				return badf("group_by: want a comma-separated list of date, tenant, user and key, got %q", f)
			}
			if slices.Contains(uq.GroupBy, f) {
				return badf("group_by: %s is listed twice", f)
			}
			uq.GroupBy = append(uq.GroupBy, f)
		}
	}
	if p.manager == "" {
		switch {
		case uq.Tenant != "" && readsWallet(p, uq.Tenant):
			// the tenant's rows, any user's and key's
		case uq.User != "" && uq.User != p.user:
			return forbiddenf("user: you may read only your own usage, or a tenant's you manage the keys of (with tenant=)")
		case uq.Tenant != "" && !slices.Contains(p.tenants, uq.Tenant):
			return forbiddenf("tenant: you may read only your own usage in tenants you are a member of, or a tenant's you manage the keys of")
		default:
			uq.User = p.user
		}
		if uq.Key != "" {
			k, err := h.cfg.Store.Get(r.Context(), uq.Key)
			if err != nil || !(k.User == p.user || (uq.Tenant != "" && readsWallet(p, uq.Tenant) && k.Tenant == uq.Tenant)) {
				return forbiddenf("key: not one of yours, nor of a tenant you manage the keys of (with tenant=)")
			}
		}
	}
	rows, err := h.cfg.Usage.UsageRows(r.Context(), h.cfg.Store, uq)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string][]store.UsageRow{"rows": rows})
}
