package testkit

// This file holds loopback identity providers: one serving a JWK set, one
// serving OpenID Connect discovery too.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// IdP serves a JWK set over loopback HTTP, as an identity provider would;
// the test can replace the set or take the IdP down. It is safe for
// concurrent use and closes when the test ends.
//
//lint:ignore ST1003 "IdP" is how identity provider is written
type IdP struct {
	srv  *httptest.Server
	hits atomic.Int32

	mu   sync.Mutex
	doc  []byte
	down bool
}

// NewIdP serves doc (a JWK set document).
//
//lint:ignore ST1003 "IdP" is how identity provider is written
func NewIdP(t testing.TB, doc []byte) *IdP {
	idp := &IdP{doc: doc}
	idp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		idp.hits.Add(1)
		idp.mu.Lock()
		doc, down := idp.doc, idp.down
		idp.mu.Unlock()
		if down {
			http.Error(w, "IdP down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(idp.srv.Close)
	return idp
}

// Set replaces the served document and whether the IdP answers 502.
func (i *IdP) Set(doc []byte, down bool) {
	i.mu.Lock()
	i.doc, i.down = doc, down
	i.mu.Unlock()
}

// URL is the JWK set's address.
func (i *IdP) URL() string { return i.srv.URL + "/jwks.json" }

// Hits is the number of requests served so far.
func (i *IdP) Hits() int { return int(i.hits.Load()) }

// OIDC serves an OpenID Connect provider's discovery document and JWK sets
// over loopback HTTP. The test can make the document name another issuer,
// move its jwks_uri, change the sets, or hold every answer until it lets
// them go. It is safe for concurrent use and closes when the test ends.
type OIDC struct {
	srv *httptest.Server

	mu       sync.Mutex
	claimed  string            // the issuer the document names; "" = its own URL
	jwksPath string            // where the document's jwks_uri points
	sets     map[string][]byte // JWK set documents by path
	hits     map[string]int
	gate     chan struct{} // while non-nil, answers wait for it to close
}

// NewOIDC serves set at /keys/1.json, named by the discovery document.
func NewOIDC(t testing.TB, set []byte) *OIDC {
	o := &OIDC{jwksPath: "/keys/1.json", sets: map[string][]byte{"/keys/1.json": set}, hits: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[r.URL.Path]++
		gate := o.gate
		o.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/.well-known/openid-configuration" {
			issuer := o.claimed
			if issuer == "" {
				issuer = o.srv.URL
			}
			_, _ = fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q,"response_types_supported":["code"],"subject_types_supported":["public"],`+
				`"id_token_signing_alg_values_supported":["RS256"]}`, issuer, o.srv.URL+o.jwksPath)
			return
		}
		set, ok := o.sets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(set)
	}))
	t.Cleanup(func() { o.Release(); o.srv.Close() })
	return o
}

// Issuer is the provider's issuer: its own URL.
func (o *OIDC) Issuer() string { return o.srv.URL }

// Claim makes the discovery document name issuer ("" = its own URL).
func (o *OIDC) Claim(issuer string) {
	o.mu.Lock()
	o.claimed = issuer
	o.mu.Unlock()
}

// Move serves set at path and points the document's jwks_uri there.
func (o *OIDC) Move(path string, set []byte) {
	o.mu.Lock()
	o.jwksPath, o.sets[path] = path, set
	o.mu.Unlock()
}

// Hold makes every answer wait until Release.
func (o *OIDC) Hold() {
	o.mu.Lock()
	if o.gate == nil {
		o.gate = make(chan struct{})
	}
	o.mu.Unlock()
}

// Release lets held answers (and later ones) go.
func (o *OIDC) Release() {
	o.mu.Lock()
	if o.gate != nil {
		close(o.gate)
		o.gate = nil
	}
	o.mu.Unlock()
}

// Hits returns how many requests path has had.
func (o *OIDC) Hits(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}
