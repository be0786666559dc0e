package cache_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
)

// TestDiscovery: a discovered key set comes from the jwks_uri of the
// issuer's discovery document; when the document moves its jwks_uri, the
// next fetch follows it; while the provider is down the last good set
// keeps serving; a flood of unknown kids costs one discovery and one set
// fetch per MinRefetch.
func TestDiscovery(t *testing.T) {
	k1, k2 := testkit.RSAKey(t, 2048), testkit.RSAKey(t, 2048)
	idp := testkit.NewOIDC(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k1": k1.Public()}))
	r := cache.NewDiscovered(idp.Issuer(), cache.RemoteOptions{MinRefetch: time.Nanosecond})
	defer r.Close()
	ctx := context.Background()
	set, err := r.KeySet(ctx)
	if err != nil || len(set.Keys("k1")) != 1 {
		t.Fatalf("first fetch: %v", err)
	}
	if r.URI() != idp.Issuer()+"/.well-known/openid-configuration" || r.JWKSURI() != idp.Issuer()+"/keys/1.json" {
		t.Errorf("URI %s, JWKSURI %s", r.URI(), r.JWKSURI())
	}
	idp.Move("/keys/2.json", testkit.JWKS(t, map[string]crypto.PublicKey{"k2": k2.Public()}))
	set, err = r.Refetch(ctx)
	if err != nil || len(set.Keys("k2")) != 1 || len(set.Keys("k1")) != 0 || r.JWKSURI() != idp.Issuer()+"/keys/2.json" {
		t.Fatalf("after the move: k1=%d k2=%d %s %v", len(set.Keys("k1")), len(set.Keys("k2")), r.JWKSURI(), err)
	}
	idp.Move("/keys/gone.json", nil)
	idp.Move("/keys/3.json", []byte("not json")) // a broken set: the last good one stays
	if set, err = r.Refetch(ctx); err != nil || len(set.Keys("k2")) != 1 {
		t.Fatalf("a broken set replaced the good one: %v", err)
	}

	limited := cache.NewDiscovered(idp.Issuer(), cache.RemoteOptions{MinRefetch: time.Hour})
	idp.Move("/keys/2.json", testkit.JWKS(t, map[string]crypto.PublicKey{"k2": k2.Public()}))
	before := idp.Hits("/.well-known/openid-configuration")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := limited.Refetch(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := idp.Hits("/.well-known/openid-configuration") - before; n != 1 {
		t.Errorf("%d discovery fetches for 50 unknown kids, want 1", n)
	}
}

// TestDiscoveryIssuerMismatch: a document naming another issuer is not
// used at all (OpenID Connect Discovery §4.3): before any good set the
// issuer is unavailable with an error saying why; after one, the last
// good set stays.
func TestDiscoveryIssuerMismatch(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	idp := testkit.NewOIDC(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))
	for _, claimed := range []string{"https://evil.example", idp.Issuer() + "/", strings.ToUpper(idp.Issuer()), idp.Issuer() + "x"} {
		idp.Claim(claimed)
		r := cache.NewDiscovered(idp.Issuer(), cache.RemoteOptions{})
		_, err := r.KeySet(context.Background())
		if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "names issuer") || !strings.Contains(err.Error(), "§4.3") {
			t.Errorf("document naming %q: %v", claimed, err)
		}
		if idp.Hits("/keys/1.json") != 0 {
			t.Errorf("document naming %q: its jwks_uri was fetched", claimed)
		}
	}
	idp.Claim("")
	r := cache.NewDiscovered(idp.Issuer(), cache.RemoteOptions{MinRefetch: time.Nanosecond})
	if _, err := r.KeySet(context.Background()); err != nil {
		t.Fatal(err)
	}
	idp.Claim("https://evil.example")
	if set, err := r.Refetch(context.Background()); err != nil || len(set.Keys("k")) != 1 {
		t.Fatalf("a later mismatch must keep the last good set: %v", err)
	}
}

// TestDiscoveryJWKSURIChecked: an https issuer's jwks_uri must be an
// absolute https URL: http, relative or hostless addresses are refused and
// never fetched.
func TestDiscoveryJWKSURIChecked(t *testing.T) {
	var jwksURI string
	fetched := 0
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			fetched++
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, "https://"+r.Host, jwksURI)
	}))
	defer srv.Close()
	for _, u := range []string{"http://" + srv.Listener.Addr().String() + "/keys", "/keys", "https:///keys", "ftp://x/keys", "", "::"} {
		jwksURI = u
		r := cache.NewDiscovered(srv.URL, cache.RemoteOptions{Client: srv.Client()})
		if _, err := r.KeySet(context.Background()); !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "not an absolute https URL") {
			t.Errorf("jwks_uri %q: %v", u, err)
		}
	}
	if fetched != 0 {
		t.Errorf("a refused jwks_uri was fetched %d times", fetched)
	}
}
