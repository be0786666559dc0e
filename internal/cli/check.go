package cli

// This file holds `portcullis check` and `portcullis validate`.

import (
	"context"

	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
	"github.com/portcullis/portcullis/store"
)

// headerFlags collects repeated -H 'name: value' flags; a repeated name is
// joined with "," exactly as Envoy joins repeated headers.
type headerFlags struct {
	m     map[string]string
	order []string
}

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.ToLower(strings.TrimSpace(name))
	if !ok || name == "" {
		return fmt.Errorf("want 'name: value', got %q", v)
	}
	value = strings.TrimLeft(value, " \t")
	if h.m == nil {
		h.m = map[string]string{}
	}
	if prev, dup := h.m[name]; dup {
		value = prev + "," + value
	} else {
		h.order = append(h.order, name)
	}
	h.m[name] = value
	return nil
}

// checkResult is the JSON check prints (README, "Two commands").
type checkResult struct {
	Allow         bool              `json:"allow"`
	Status        int               `json:"status"`
	Reason        reason.Code       `json:"reason"`
	Tier          string            `json:"tier"`
	Tenant        string            `json:"tenant"`
	TenantKind    string            `json:"tenant_kind"`
	User          string            `json:"user"`
	Credential    string            `json:"credential"`
	SetHeaders    map[string]string `json:"set_headers"`
	RemoveHeaders []string          `json:"remove_headers"`
	// With a policy that meters (credits): what the request costs, and
	// the wallet that would pay; check and test charge nothing.
	Cost   int64  `json:"cost,omitempty"`
	Wallet string `json:"wallet,omitempty"`
}

// newCheckResult is d as check prints it.
func newCheckResult(d *policy.Decision) *checkResult {
	res := &checkResult{
		Allow: d.Allow, Status: d.Status(), Reason: d.Reason, Tier: d.Tier, Tenant: d.Tenant,
		TenantKind: d.TenantKind, User: d.User, Credential: d.Credential, Cost: d.Cost, Wallet: d.Wallet,
		SetHeaders: map[string]string{}, RemoveHeaders: []string{},
	}
	for _, h := range d.SetHeaders {
		res.SetHeaders[h.Name] = h.Value
	}
	res.RemoveHeaders = append(res.RemoveHeaders, d.RemoveHeaders...)
	return res
}

// print writes r as indented JSON.
func (r *checkResult) print(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Check is `portcullis check`: one offline decision.
func Check(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file (YAML or JSON)")
	method := fs.String("method", "GET", "request method")
	path := fs.String("path", "", "request path, query string allowed")
	host := fs.String("host", "", "request host (:authority)")
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'name: value' (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkUsage)
		fs.PrintDefaults()
	}
	if ok, help := ParseFlags(fs, args, stdout, stderr); !ok {
		if help {
			return ExitOK
		}
		return ExitUsage
	}
	if *policyPath == "" || *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return ExitUsage
	}
	snap, err := policy.Load(*policyPath, policy.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "portcullis check: invalid policy:\n%v\n", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	opts, err := storeKeys(ctx, snap, "check", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis check: %v\n", err)
		return ExitUsage
	}
	eng := policy.NewEngine(snap, opts)
	if headers.m == nil {
		headers.m = map[string]string{}
	}
	d := eng.Decide(ctx, policy.Request{Method: *method, Path: *path, Host: *host, Headers: headers.m})

	if err := newCheckResult(&d).print(stdout); err != nil {
		fmt.Fprintf(stderr, "portcullis check: %v\n", err)
		return ExitUsage
	}
	if !d.Allow {
		return ExitDenied
	}
	return ExitOK
}

const checkUsage = `usage: portcullis check --policy FILE --method M --path P [--host H] [-H 'name: value']...

Decides one request offline, exactly as the server would, and prints the decision as JSON.
Exit 0 allowed, 3 denied, 2 on a usage or policy error.

flags:
`

const validateUsage = `usage: portcullis validate FILE

Loads the policy FILE with the keys and JWKS files it names, as the server would, and
lists every problem as file:line: field: what is wrong.
Exit 0 valid, 1 invalid, 2 on a usage error.
`

// Validate is `portcullis validate`: every problem of a policy at once.
func Validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), validateUsage) }
	if ok, help := ParseFlags(fs, args, stdout, stderr); !ok {
		if help {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	file := fs.Arg(0)
	if _, err := os.Stat(file); err != nil {
		fmt.Fprintf(stderr, "portcullis validate: %v\n", err)
		return ExitUsage
	}
	snap, err := policy.Load(file, policy.LoadOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		fmt.Fprintf(stderr, "portcullis validate: %s is invalid\n", file)
		return ExitFailed
	}
	// What loads but will not work as its author meant: a warning each,
	// on stderr; the policy is still valid.
	for _, w := range snap.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: valid (%d keys, %d files)\n", file, snap.Keys().Len(), len(snap.Files()))
	return ExitOK
}

// storeKeys loads the key store's keys once, when the policy has one and
// its DSN is set, so check decides as the server would.
func storeKeys(ctx context.Context, snap *policy.Snapshot, command string, stderr io.Writer) (policy.EngineOptions, error) {
	ks := snap.KeyStore()
	if ks == nil {
		return policy.EngineOptions{}, nil
	}
	dsn := os.Getenv(ks.DSNEnv)
	if dsn == "" {
		fmt.Fprintf(stderr, "portcullis %s: $%s is not set: the key store's keys are not consulted\n", command, ks.DSNEnv)
		return policy.EngineOptions{}, nil
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return policy.EngineOptions{}, fmt.Errorf("keys_store: $%s: %w", ks.DSNEnv, err)
	}
	m, err := store.LoadOnce(ctx, cfg)
	if err != nil {
		return policy.EngineOptions{}, fmt.Errorf("keys_store: loading its keys: %w", err)
	}
	return policy.EngineOptions{Store: m}, nil
}
