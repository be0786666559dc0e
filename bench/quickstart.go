package main

// This file holds the benchmark of the shipped quickstart: the README's
// first command's policy, beside the no-op server, in one command.

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/internal/demo"
)

var quickstart = flag.Bool("quickstart", false, "instead of the table: the shipped quickstart policy (examples/three-tiers) with its demo credentials, beside the no-op")

// quickstartDir is the README's quickstart example.
const quickstartDir = "examples/three-tiers"

// quickstartBench runs the quickstart's own requests: a service-tier read
// with a customer key, an admin write with the key and a cached token, the
// same with a token never seen before (the same user's next token), and a
// wrong key. They are numbered as the harness's workloads of the same kind,
// so the same targets apply.
func (b *bench) quickstartBench(out io.Writer) error {
	creds, err := demo.LoadDir(quickstartDir)
	if err != nil {
		return fmt.Errorf("%v (run from the repository root)", err)
	}
	key, err := creds.Key("acme")
	if err != nil {
		return err
	}
	n := 5000
	if *quick {
		n = 1000
	}
	logf("minting %d tokens of the quickstart's alice-access", n)
	now := time.Now()
	tokens := make([]*authv3.CheckRequest, n)
	for i := range tokens {
		t, err := creds.Mint("alice-access", now, time.Hour, map[string]any{"jti": "bench-" + strconv.Itoa(i)})
		if err != nil {
			return err
		}
		tokens[i] = checkReq("POST", map[string]string{"x-api-key": key, "authorization": "Bearer " + t})
	}
	read := checkReq("GET", map[string]string{"x-api-key": key, "authorization": "None"})
	cached := checkReq("POST", map[string]string{"x-api-key": key, "authorization": tokens[0].GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]})
	wrong := checkReq("GET", map[string]string{"x-api-key": "9b6LK2qHFDii0dBXxu4Z6P3qkGOgIwVTLynW38B7", "authorization": "None"})
	scale := func(v int) int {
		if *quick {
			return max(v/5, 200)
		}
		return v
	}
	policy := filepath.Join(quickstartDir, "policy.yaml")
	ws := []workload{
		{1, "quickstart: service read, key", policy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return read }, true},
		{2, "quickstart: admin write, key + cached token", policy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return cached }, true},
		{3, "quickstart: admin write, key + first-sight token", policy, min(n, 2000), n, func(i int) *authv3.CheckRequest { return tokens[i%n] }, true},
		{5, "quickstart: deny, wrong key", policy, scale(2500), scale(20000), func(int) *authv3.CheckRequest { return wrong }, false},
	}
	rep := &report{}
	for _, w := range ws {
		resp, err := b.capture(w.policy, w.req(0))
		if err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
		for _, conc := range []int{1, 50} {
			r, err := b.measure(w, conc, 0, resp)
			if err != nil {
				return err
			}
			rep.rows = append(rep.rows, r)
		}
	}
	rep.notes = append(rep.notes, "- The first-sight token is the same user's (a new `jti` each): its response encoding is cached already, "+
		"as in production when users refresh tokens; workload 3 of the harness has a new user per token.")
	rep.write(out, command())
	return nil
}
