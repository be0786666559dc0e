package api

// This file holds the calls on the directory (CONTRACT §10): tenants,
// their members and user states. Management tokens make every change; a
// tenant's key managers read it and its members, a user their own state;
// anyone else learns nothing (404), and a user calling a row only the
// platform may is 403.

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/directory"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

var (
	errNoTenant    = errors.New("no such tenant")
	errNoUser      = errors.New("no such user")
	errNoDirectory = errors.New("the policy keeps no directory in the store: set directory.store in the policy")
)

// tenantIDRe is what a tenant id or alias may be.
var tenantIDRe = regexp.MustCompile(`^[A-Za-z0-9._@:+-]{1,128}$`)

func checkTenantID(field, id string) error {
	switch {
	case !tenantIDRe.MatchString(id):
		return badf("%s: want 1 to 128 of A-Z, a-z, 0-9 and . _ @ : + -", field)
	}
	return notAKey(field, id)
}

// maxMembers bounds a bulk member list; maxBulkBody its body.
const (
	maxMembers  = 10_000
	maxBulkBody = 4 << 20
)

// tenantObject is a tenant as answers show it.
type tenantObject struct {
	ID          string     `json:"id"`
	DisplayName string     `json:"display_name"`
	Aliases     []string   `json:"aliases"`
	Disabled    bool       `json:"disabled"`
	Plan        *string    `json:"plan"` // null: the policy's default plan (or no plans)
	CreatedAt   *time.Time `json:"created_at"`
	Source      string     `json:"source"`
	Version     *int64     `json:"version,omitempty"`
}

func storeTenantObject(t store.Tenant) tenantObject {
	created := t.CreatedAt
	return tenantObject{ID: t.ID, DisplayName: t.DisplayName, Aliases: t.Aliases, Disabled: t.Disabled, Plan: optional(t.Plan),
		CreatedAt: &created, Source: "store"}
}

func policyTenantObject(id string, aliases []string, plan string) tenantObject {
	if aliases == nil {
		aliases = []string{}
	}
	return tenantObject{ID: id, Aliases: aliases, Plan: optional(plan), Source: "policy"}
}

// directoryOn refuses every directory call when the policy keeps no
// directory in the store.
func directoryOn(p *principal) error {
	if !p.snap.Directory() {
		return errNoDirectory
	}
	return nil
}

// platformOnly refuses a user on a call only management tokens make.
func platformOnly(p *principal) error {
	if err := directoryOn(p); err != nil {
		return err
	}
	if p.manager == "" {
		return forbiddenf("only the platform (a management token) changes or lists the directory")
	}
	return nil
}

// readsTenant returns tenant id's canonical id when the principal may
// read it: a management token, or one of its key managers. Anyone else,
// and a tenant nobody has, is errNoTenant.
func readsTenant(p *principal, id string) (string, error) {
	if err := directoryOn(p); err != nil {
		return "", err
	}
	canon, ok := p.dir.Canonical(id)
	if !ok || (p.manager == "" && !slices.Contains(p.adminOf, canon)) {
		return "", errNoTenant
	}
	return canon, nil
}

// memberUser checks a user id a membership or a user state names: the
// field rules, and no tenant's name (users and tenants share the tenant
// header: 409).
func memberUser(p *principal, field, u string) error {
	if err := checkText(field, u, 200, false); err != nil {
		return err
	}
	if err := notAKey(field, u); err != nil {
		return err
	}
	if p.dir.NamesTenant(u) {
		return fmt.Errorf("%w: %s: %q is a tenant's name or alias: users and tenants share the tenant header", store.ErrConflict, field, u)
	}
	return nil
}

// names is what the store must keep its names apart from: the policy's
// tenants and aliases (and tenants its keys are bound to), and the users
// its member lists hold.
func names(p *principal) store.Names {
	return store.Names{Tenant: p.snap.NamesTenant, User: p.dir.PolicyUser}
}

type putTenantBody struct {
	DisplayName *string   `json:"display_name"`
	Aliases     *[]string `json:"aliases"`
	Disabled    *bool     `json:"disabled"`
	Plan        *string   `json:"plan"` // "": the default plan
}

// putTenant is PUT /v1/tenants/{tenant}: creates a store tenant or changes
// the fields the body sends.
func (h *Handler) putTenant(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	id := r.PathValue("tenant")
	if err := checkTenantID("tenant", id); err != nil {
		return err
	}
	var b putTenantBody
	if err := decode(r, &b, true); err != nil {
		return err
	}
	if b.DisplayName != nil {
		if err := checkText("display_name", *b.DisplayName, 200, true); err != nil {
			return err
		}
	}
	if b.Aliases != nil {
		if len(*b.Aliases) > 32 {
			return badf("aliases: at most 32")
		}
		seen := map[string]bool{id: true}
		for i, a := range *b.Aliases {
			if err := checkTenantID(fmt.Sprintf("aliases[%d]", i), a); err != nil {
				return err
			}
			if seen[a] {
				return badf("aliases[%d]: %q is listed twice, or is the tenant's id", i, a)
			}
			seen[a] = true
		}
	}
	if b.Plan != nil && *b.Plan != "" && !p.snap.HasPlan(*b.Plan) {
		if len(p.snap.Plans()) == 0 {
			return badf("plan: the policy defines no plans")
		}
		return badf("plan: not a plan of the policy (plans are: %s)", strings.Join(p.snap.Plans(), ", "))
	}
	if p.dir.Source(id) == "policy" {
		return fmt.Errorf("%w: tenant %q is the policy's: change it in the policy file", store.ErrConflict, id)
	}
	t, created, err := h.cfg.Store.PutTenant(r.Context(), id, store.TenantPut{DisplayName: b.DisplayName, Aliases: b.Aliases, Disabled: b.Disabled, Plan: b.Plan},
		p.by(), names(p), h.cfg.Now().UTC().Truncate(time.Millisecond))
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "put_tenant", "tenant", id, "by", p.by(), "version", t.Version, "created", created)
	out := storeTenantObject(t)
	out.Version = &t.Version
	return writeCreated(w, created, out)
}

// getTenant is GET /v1/tenants/{tenant}.
func (h *Handler) getTenant(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, err := readsTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	if aliases, ok := p.dir.PolicyTenant(id); ok {
		return writeJSON(w, http.StatusOK, policyTenantObject(id, aliases, p.dir.PolicyPlan(id)))
	}
	t, err := h.cfg.Store.GetTenant(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, storeTenantObject(t))
}

// listTenants is GET /v1/tenants: the policy's tenants and the store's,
// by id.
func (h *Handler) listTenants(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	size, after, err := pagingOf(r, tenantIDRe.MatchString, "page_size", "page_token")
	if err != nil {
		return err
	}
	stored, err := h.cfg.Store.ListTenants(r.Context(), after, size+1)
	if err != nil {
		return err
	}
	var all []tenantObject
	for _, t := range stored {
		all = append(all, storeTenantObject(t))
	}
	for _, id := range p.dir.PolicyTenantNames() {
		if id > after {
			aliases, _ := p.dir.PolicyTenant(id)
			all = append(all, policyTenantObject(id, aliases, p.dir.PolicyPlan(id)))
		}
	}
	slices.SortFunc(all, func(a, b tenantObject) int { return strings.Compare(a.ID, b.ID) })
	out := struct {
		Tenants []tenantObject `json:"tenants"`
		Next    string         `json:"next_page_token"`
	}{Tenants: []tenantObject{}}
	if len(all) > size {
		all = all[:size]
		out.Next = base64.RawURLEncoding.EncodeToString([]byte(all[size-1].ID))
	}
	out.Tenants = append(out.Tenants, all...)
	return writeJSON(w, http.StatusOK, out)
}

// deleteTenant is DELETE /v1/tenants/{tenant}: its memberships end and
// every key bound to it is deleted.
func (h *Handler) deleteTenant(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	id := r.PathValue("tenant")
	if p.dir.Source(id) == "policy" {
		return fmt.Errorf("%w: tenant %q is the policy's: remove it from the policy file", store.ErrConflict, id)
	}
	if checkTenantID("tenant", id) != nil {
		return errNoTenant
	}
	revoked, v, err := h.cfg.Store.DeleteTenant(r.Context(), id, p.by())
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "delete_tenant", "tenant", id, "by", p.by(), "version", v, "keys_deleted", revoked)
	return writeJSON(w, http.StatusOK, map[string]any{"id": id, "revoked": revoked, "version": v})
}

// storeTenant returns the store tenant the path names, for a change of
// its members: a policy tenant's are read-only (409).
func storeTenant(r *http.Request, p *principal) (string, error) {
	id := r.PathValue("tenant")
	if p.dir.Source(id) == "policy" {
		return "", fmt.Errorf("%w: tenant %q is the policy's: its members are in the policy file", store.ErrConflict, id)
	}
	if checkTenantID("tenant", id) != nil {
		return "", errNoTenant
	}
	return id, nil
}

// role checks a membership's role against the policy's roles: "" takes
// the default role.
func role(snap *policy.Snapshot, field, r string) (string, error) {
	roles, def := snap.Roles()
	switch {
	case r == "":
		return def, nil
	case len(roles) == 0:
		return "", badf("%s: the policy defines no roles (directory.roles)", field)
	case !slices.Contains(roles, r):
		// Not echoed: a value in the wrong field may be a secret pasted there.
		return "", badf("%s: not a role of the policy (roles are: %s)", field, strings.Join(roles, ", "))
	}
	return r, nil
}

type memberBody struct {
	Role *string `json:"role"`
}

// putMember is PUT /v1/tenants/{tenant}/members/{user}.
func (h *Handler) putMember(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	tenant, err := storeTenant(r, p)
	if err != nil {
		return err
	}
	user := r.PathValue("user")
	if err := memberUser(p, "user", user); err != nil {
		return err
	}
	var b memberBody
	if err := decode(r, &b, true); err != nil {
		return err
	}
	rl, err := role(p.snap, "role", deref(b.Role))
	if err != nil {
		return err
	}
	created, v, err := h.cfg.Store.PutMember(r.Context(), tenant, user, rl, p.by(), names(p))
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "put_member", "tenant", tenant, "user", user, "role", rl, "by", p.by(), "version", v)
	return writeCreated(w, created, map[string]any{"tenant": tenant, "user": user, "role": rl, "version": v})
}

// deleteMember is DELETE /v1/tenants/{tenant}/members/{user}: the user's
// keys bound to the tenant are kept, refused for it until they return.
func (h *Handler) deleteMember(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	tenant, err := storeTenant(r, p)
	if err != nil {
		return err
	}
	user := r.PathValue("user")
	v, err := h.cfg.Store.DeleteMember(r.Context(), tenant, user, p.by())
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "delete_member", "tenant", tenant, "user", user, "by", p.by(), "version", v)
	return writeJSON(w, http.StatusOK, map[string]any{"version": v})
}

type replaceBody struct {
	Members *[]struct {
		User *string `json:"user"`
		Role *string `json:"role"`
	} `json:"members"`
}

// replaceMembers is PUT /v1/tenants/{tenant}/members: the whole member
// list, replaced in one change.
func (h *Handler) replaceMembers(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	tenant, err := storeTenant(r, p)
	if err != nil {
		return err
	}
	var b replaceBody
	if err := decodeUpTo(r, &b, false, maxBulkBody); err != nil {
		return err
	}
	if b.Members == nil {
		return badf("members: required (an empty list ends every membership)")
	}
	if len(*b.Members) > maxMembers {
		return badf("members: at most %d in one call, got %d", maxMembers, len(*b.Members))
	}
	list := make([]directory.Member, 0, len(*b.Members))
	seen := make(map[string]int, len(*b.Members))
	for i, m := range *b.Members {
		field := fmt.Sprintf("members[%d]", i)
		u := deref(m.User)
		if u == "" {
			return badf("%s.user: required", field)
		}
		if err := memberUser(p, field+".user", u); err != nil {
			return err
		}
		if j, dup := seen[u]; dup {
			return badf("%s.user: %q is listed twice (members[%d] too)", field, u, j)
		}
		seen[u] = i
		rl, err := role(p.snap, field+".role", deref(m.Role))
		if err != nil {
			return err
		}
		list = append(list, directory.Member{Tenant: tenant, User: u, Role: rl})
	}
	rep, err := h.cfg.Store.ReplaceMembers(r.Context(), tenant, list, p.by(), names(p))
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "replace_members", "tenant", tenant, "by", p.by(), "version", rep.Version,
		"added", rep.Added, "removed", rep.Removed, "changed", rep.Changed)
	return writeJSON(w, http.StatusOK, map[string]any{"added": rep.Added, "removed": rep.Removed, "changed": rep.Changed, "version": rep.Version})
}

type memberObject struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// listMembers is GET /v1/tenants/{tenant}/members.
func (h *Handler) listMembers(w http.ResponseWriter, r *http.Request, p *principal) error {
	id, err := readsTenant(p, r.PathValue("tenant"))
	if err != nil {
		return err
	}
	size, after, err := pagingOf(r, func(u string) bool { return checkText("page_token", u, 200, false) == nil }, "page_size", "page_token")
	if err != nil {
		return err
	}
	var ms []directory.Member
	if _, ok := p.dir.PolicyTenant(id); ok {
		for _, m := range p.dir.PolicyMembers(id) {
			if m.User > after && len(ms) <= size {
				ms = append(ms, m)
			}
		}
	} else if ms, err = h.cfg.Store.ListMembers(r.Context(), id, after, size+1); err != nil {
		return err
	}
	out := struct {
		Members []memberObject `json:"members"`
		Next    string         `json:"next_page_token"`
	}{Members: []memberObject{}}
	if len(ms) > size {
		ms = ms[:size]
		out.Next = base64.RawURLEncoding.EncodeToString([]byte(ms[size-1].User))
	}
	for _, m := range ms {
		out.Members = append(out.Members, memberObject{User: m.User, Role: m.Role})
	}
	return writeJSON(w, http.StatusOK, out)
}

type userObject struct {
	ID       string          `json:"id"`
	Disabled bool            `json:"disabled"`
	Tenants  []userTenantRef `json:"tenants"`
	Version  *int64          `json:"version,omitempty"`
}

type userTenantRef struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

// userObjectOf is user as the policy and the store hold them now.
func (h *Handler) userObjectOf(r *http.Request, p *principal, user string) (userObject, error) {
	disabled, stored, err := h.cfg.Store.UserState(r.Context(), user)
	if err != nil {
		return userObject{}, err
	}
	out := userObject{ID: user, Disabled: disabled, Tenants: []userTenantRef{}}
	for _, t := range p.dir.PolicyTenantNames() {
		if rl, ok := p.dir.Role(t, user); ok {
			out.Tenants = append(out.Tenants, userTenantRef{ID: t, Role: rl})
		}
	}
	for _, m := range stored {
		out.Tenants = append(out.Tenants, userTenantRef{ID: m.Tenant, Role: m.Role})
	}
	slices.SortFunc(out.Tenants, func(a, b userTenantRef) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// getUser is GET /v1/users/{user}: the platform, or that user.
func (h *Handler) getUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := directoryOn(p); err != nil {
		return err
	}
	user := r.PathValue("user")
	if p.manager == "" && user != p.user {
		return errNoUser
	}
	if checkText("user", user, 200, false) != nil {
		return errNoUser
	}
	out, err := h.userObjectOf(r, p, user)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

type putUserBody struct {
	Disabled *bool `json:"disabled"`
}

// putUser is PUT /v1/users/{user}: disables or enables a user everywhere.
func (h *Handler) putUser(w http.ResponseWriter, r *http.Request, p *principal) error {
	if err := platformOnly(p); err != nil {
		return err
	}
	user := r.PathValue("user")
	if err := memberUser(p, "user", user); err != nil {
		return err
	}
	var b putUserBody
	if err := decode(r, &b, false); err != nil {
		return err
	}
	if b.Disabled == nil {
		return badf("disabled: required")
	}
	v, err := h.cfg.Store.PutUser(r.Context(), user, *b.Disabled, p.by(), names(p))
	if err != nil {
		return err
	}
	h.cfg.Log.InfoContext(r.Context(), "directory changed", "op", "put_user", "user", user, "disabled", *b.Disabled, "by", p.by(), "version", v)
	out, err := h.userObjectOf(r, p, user)
	if err != nil {
		return err
	}
	out.Version = &v
	return writeJSON(w, http.StatusOK, out)
}

// pagingOf reads a listing's page_size (1 to 200, default 50) and
// page_token (an earlier answer's next_page_token: what it holds must be
// what valid says a cursor of this listing is), refusing any other
// parameter.
func pagingOf(r *http.Request, valid func(string) bool, allowed ...string) (int, string, error) {
	q := r.URL.Query()
	for name := range q {
		if !slices.Contains(allowed, name) {
			return 0, "", badf("%s is not a parameter of this call", name)
		}
	}
	return paging(q, func(cursor string) bool { return cursor != "" && valid(cursor) })
}
