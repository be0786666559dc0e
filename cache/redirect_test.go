package cache_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
)

// keyServer serves a JWK set at /keys.json and counts what it served.
type keyServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newKeyServer(t *testing.T, tls bool, set []byte) *keyServer {
	ks := &keyServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	})
	if tls {
		ks.Server = httptest.NewTLSServer(h)
	} else {
		ks.Server = httptest.NewServer(h)
	}
	t.Cleanup(ks.Close)
	return ks
}

// TestRedirectsStayOnTheConfiguredOrigin: a loopback TLS provider whose
// discovery document or key set answers with a redirect (every redirect
// status) to plain http or to another host is refused: the issuer is
// unavailable, the error says why, and the target is never asked. A
// redirect within the same origin is followed.
func TestRedirectsStayOnTheConfiguredOrigin(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	set := testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()})
	plain := newKeyServer(t, false, set) // http, another port
	other := newKeyServer(t, true, set)  // https, another host:port
	var target atomic.Pointer[string]    // where the provider's redirect points
	var redirectDoc, redirectSet atomic.Bool
	var status atomic.Int64
	var provider *httptest.Server
	provider = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			if redirectDoc.Load() {
				http.Redirect(w, r, *target.Load(), int(status.Load()))
				return
			}
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q}`, provider.URL, provider.URL+"/jwks.json")
		case "/jwks.json":
			if redirectSet.Load() {
				http.Redirect(w, r, *target.Load(), int(status.Load()))
				return
			}
			_, _ = w.Write(set)
		case "/keys.json", "/moved/openid-configuration":
			// The same origin: a redirect here is followed.
			if r.URL.Path == "/keys.json" {
				_, _ = w.Write(set)
				return
			}
			fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": %q}`, provider.URL, provider.URL+"/keys.json")
		default:
			http.NotFound(w, r)
		}
	}))
	defer provider.Close()
	client := provider.Client() // trusts every httptest TLS server: the refusal is the rule's, not the certificate's

	for _, hop := range []string{"discovery document", "key set"} {
		for _, code := range []int{301, 302, 303, 307, 308} {
			for _, tc := range []struct {
				name, to string
				server   *keyServer
				why      string
			}{
				{"https to http", plain.URL + "/keys.json", plain, "from https to http"},
				{"to another host", other.URL + "/keys.json", other, "another host"},
				{"to another host over http", strings.Replace(other.URL, "https:", "http:", 1) + "/keys.json", other, "from https to http"},
			} {
				t.Run(fmt.Sprintf("%s %d %s", hop, code, tc.name), func(t *testing.T) {
					to := tc.to
					if hop == "discovery document" {
						to = strings.TrimSuffix(to, "/keys.json") + "/.well-known/openid-configuration"
					}
					target.Store(&to)
					status.Store(int64(code))
					redirectDoc.Store(hop == "discovery document")
					redirectSet.Store(hop == "key set")
					before := tc.server.hits.Load()
					r := cache.NewDiscovered(provider.URL, cache.RemoteOptions{Client: client})
					defer r.Close()
					_, err := r.KeySet(context.Background())
					if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), tc.why) {
						t.Fatalf("redirect %s: %v, want unavailable saying %q", to, err, tc.why)
					}
					if n := tc.server.hits.Load() - before; n != 0 {
						t.Fatalf("the redirect's target was asked %d times", n)
					}
					// A key set named directly is held to the same rule.
					if hop == "key set" {
						direct := cache.NewRemote(provider.URL+"/jwks.json", cache.RemoteOptions{Client: client})
						defer direct.Close()
						if _, err := direct.KeySet(context.Background()); !errors.Is(err, cache.ErrUnavailable) || tc.server.hits.Load() != before {
							t.Fatalf("a configured jwks uri followed the redirect: %v", err)
						}
					}
				})
			}
		}
	}

	t.Run("within the same origin", func(t *testing.T) {
		for _, hop := range []string{"/moved/openid-configuration", "/keys.json"} {
			to := provider.URL + hop
			target.Store(&to)
			status.Store(http.StatusFound)
			redirectDoc.Store(hop == "/moved/openid-configuration")
			redirectSet.Store(hop == "/keys.json")
			r := cache.NewDiscovered(provider.URL, cache.RemoteOptions{Client: client})
			set, err := r.KeySet(context.Background())
			r.Close()
			if err != nil || len(set.Keys("k")) != 1 {
				t.Fatalf("a same-origin redirect to %s: %v", hop, err)
			}
		}
	})
}
