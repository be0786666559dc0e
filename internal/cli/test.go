package cli

// This file holds `portcullis test`: policy tests written as YAML, each a
// request and what must come back, decided offline as `check` decides.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/demo"
	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// testFile is one policy test file (CONTRACT.md §9).
type testFile struct {
	Policy      string     `yaml:"policy"`
	Credentials string     `yaml:"credentials"`
	Tests       []testCase `yaml:"tests"`
}

type testCase struct {
	Name    string      `yaml:"name"`
	Request testRequest `yaml:"request"`
	Expect  testExpect  `yaml:"expect"`
}

type testRequest struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Host    string            `yaml:"host"`
	Headers map[string]string `yaml:"headers"`
}

// testExpect holds what must come back; a nil field is not checked.
type testExpect struct {
	Allow         *bool             `yaml:"allow"`
	Status        *int              `yaml:"status"`
	Reason        *string           `yaml:"reason"`
	Tier          *string           `yaml:"tier"`
	Tenant        *string           `yaml:"tenant"`
	TenantKind    *string           `yaml:"tenant_kind"`
	User          *string           `yaml:"user"`
	Credential    *string           `yaml:"credential"`
	Cost          *int64            `yaml:"cost"`
	Wallet        *string           `yaml:"wallet"`
	SetHeaders    map[string]string `yaml:"set_headers"`
	RemoveHeaders []string          `yaml:"remove_headers"`
}

const testUsage = `usage: portcullis test [--policy FILE] TESTFILE...

Decides each case of the policy test files offline, as check does, and prints
PASS <name> or FAIL <name>: <field> want <x> got <y> with the decision; the last
line counts them. Every problem of every file (the file, its policy, its
credentials) is listed at once, and then no case runs.
Exit 0 all pass, 1 a case failed, 2 on a usage, policy or test-file error.

flags:
`

// Test runs policy test files and prints one line per case and a summary.
func Test(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	policyPath := fs.String("policy", "", "policy file, instead of each test file's own")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), testUsage)
		fs.PrintDefaults()
	}
	if ok, help := ParseFlags(fs, args, stdout, stderr); !ok {
		if help {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return ExitUsage
	}
	// Every file is read and its policy loaded before any case runs: a
	// broken file is a usage error, not a half-run suite, and every
	// problem of every file is listed at once.
	var suites []*suite
	var problems []error
	for _, name := range fs.Args() {
		s, err := loadSuite(ctx, name, *policyPath, stderr)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		suites = append(suites, s)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "portcullis test: no case ran:\n%v\n", errors.Join(problems...))
		return ExitUsage
	}
	passed, failed := 0, 0
	for _, s := range suites {
		for _, c := range s.cases {
			if s.run(ctx, c, stdout) {
				passed++
			} else {
				failed++
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return ExitFailed
	}
	return ExitOK
}

// suite is one loaded test file: its cases with their requests expanded,
// and the engine that decides them.
type suite struct {
	eng   *policy.Engine
	cases []loadedCase
}

type loadedCase struct {
	testCase
	req policy.Request
}

func loadSuite(ctx context.Context, name, policyOverride string, stderr io.Writer) (*suite, error) {
	raw, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var tf testFile
	f, err := source.Decode(name, raw, &tf)
	if f == nil {
		return nil, err
	}
	// Fields that did not decode are problems; the rest is checked too.
	var p source.Problems
	p.Add(err)
	dir := filepath.Dir(name)
	polPath := policyOverride
	if polPath == "" {
		if tf.Policy == "" {
			p.Addf(f, "policy", "required: the policy the tests are for (relative to this file), or give --policy")
		}
		polPath = relTo(dir, tf.Policy)
	}
	var creds *demo.Credentials
	if tf.Credentials != "" {
		if creds, err = demo.Load(relTo(dir, tf.Credentials)); err != nil {
			p.Addf(f, "credentials", "%v", err)
		}
	}
	if len(tf.Tests) == 0 {
		p.Addf(f, "tests", "no tests: give a list of cases, each a name, a request and what to expect")
	}
	s := &suite{}
	now := time.Now()
	seen := map[string]bool{}
	for i, c := range tf.Tests {
		at := fmt.Sprintf("tests[%d]", i)
		switch {
		case c.Name == "":
			p.Addf(f, at+".name", "required: a name for the case")
		case seen[c.Name]:
			p.Addf(f, at+".name", "%q names another case too", c.Name)
		}
		seen[c.Name] = true
		if c.Request.Path == "" {
			p.Addf(f, at+".request.path", "required")
		}
		req := policy.Request{Method: c.Request.Method, Path: c.Request.Path, Host: c.Request.Host, Headers: map[string]string{}}
		if req.Method == "" {
			req.Method = "GET"
		}
		for h, v := range c.Request.Headers {
			switch {
			case creds != nil:
				if v, err = creds.Expand(v, now); err != nil {
					p.Addf(f, at+".request.headers."+h, "%v", err)
				}
			case demo.IsPlaceholder(v):
				p.Addf(f, at+".request.headers."+h, "%q is a placeholder: name the demo credentials file (credentials:) that holds it", v)
			}
			req.Headers[strings.ToLower(h)] = v
		}
		if r := c.Expect.Reason; r != nil {
			code := reason.Code(*r)
			switch {
			case !code.Known():
				p.Addf(f, at+".expect.reason", "unknown reason %q (want one of %s)", *r, strings.Join(reasonNames(), ", "))
			case c.Expect.Allow != nil && *c.Expect.Allow != (code.Status() == 200):
				p.Addf(f, at+".expect", "allow %v and reason %q contradict each other", *c.Expect.Allow, *r)
			case c.Expect.Status != nil && *c.Expect.Status != code.Status():
				p.Addf(f, at+".expect", "status %d and reason %q contradict each other (%s is %d)", *c.Expect.Status, *r, *r, code.Status())
			}
		}
		s.cases = append(s.cases, loadedCase{testCase: c, req: req})
	}
	if polPath == "" {
		return nil, p.Err()
	}
	snap, err := policy.Load(polPath, policy.LoadOptions{})
	if err != nil {
		p.Add(fmt.Errorf("%s: the policy is invalid (%s):\n%w", name, polPath, err))
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	opts, err := storeKeys(ctx, snap, "test", stderr)
	if err != nil {
		return nil, err
	}
	s.eng = policy.NewEngine(snap, opts)
	return s, nil
}

func reasonNames() []string {
	var out []string
	for _, r := range reason.All() {
		out = append(out, string(r))
	}
	return out
}

func relTo(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// run decides one case and prints PASS, or FAIL with every mismatch and the
// decision as check prints it.
func (s *suite) run(ctx context.Context, c loadedCase, out io.Writer) bool {
	d := s.eng.Decide(ctx, c.req)
	got := newCheckResult(&d)
	var diffs []string
	want := func(field string, w, g any) {
		if w != g {
			diffs = append(diffs, fmt.Sprintf("%s want %s got %s", field, show(w), show(g)))
		}
	}
	e := c.Expect
	if e.Allow != nil {
		want("allow", *e.Allow, got.Allow)
	}
	if e.Status != nil {
		want("status", *e.Status, got.Status)
	}
	if e.Cost != nil {
		want("cost", *e.Cost, got.Cost)
	}
	for _, f := range []struct {
		name string
		want *string
		got  string
	}{
		{"reason", e.Reason, string(got.Reason)}, {"tier", e.Tier, got.Tier}, {"tenant", e.Tenant, got.Tenant},
		{"tenant_kind", e.TenantKind, got.TenantKind}, {"user", e.User, got.User}, {"credential", e.Credential, got.Credential},
		{"wallet", e.Wallet, got.Wallet},
	} {
		if f.want != nil {
			want(f.name, *f.want, f.got)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.SetHeaders)) {
		g, ok := got.SetHeaders[strings.ToLower(name)]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("set_headers.%s want %s got not set", name, show(e.SetHeaders[name])))
		} else {
			want("set_headers."+name, e.SetHeaders[name], g)
		}
	}
	for _, name := range e.RemoveHeaders {
		if !slices.Contains(got.RemoveHeaders, strings.ToLower(name)) {
			diffs = append(diffs, fmt.Sprintf("remove_headers want %s among them got %s", show(name), show(got.RemoveHeaders)))
		}
	}
	if len(diffs) == 0 {
		fmt.Fprintf(out, "PASS %s\n", c.Name)
		return true
	}
	fmt.Fprintf(out, "FAIL %s: %s\n", c.Name, strings.Join(diffs, "; "))
	if err := got.print(out); err != nil {
		fmt.Fprintf(out, "(the decision could not be printed: %v)\n", err)
	}
	return false
}

// show formats a value of a test line: strings quoted, lists in brackets.
func show(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v)
}
