package testkit

// This file holds a loopback identity provider serving a JWK set.

import (
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
