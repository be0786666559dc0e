package cache_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/testkit"
)

// TestRealWorldJWKS loads every key set published by a real IdP: all must
// load; the x509 certificate map, which is not a JWK set, must be refused
// with an error that says so.
func TestRealWorldJWKS(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testkit.Realworld(t, "jwks"), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JWK sets found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			set, err := cache.ParseKeySet(data)
			if strings.Contains(f, "NOT-JWKS") {
				if err == nil || !strings.Contains(err.Error(), `no "keys" array`) {
					t.Fatalf("want a clear refusal, got set=%v err=%v", set, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("real JWK set refused: %v", err)
			}
			if set.Len() == 0 {
				t.Fatal("no usable key")
			}
			for _, k := range set.All() {
				if k.Public == nil {
					t.Errorf("key %q has no public key", k.ID)
				}
				if _, isRSA := k.Public.(*rsa.PublicKey); isRSA != (k.Modulus != nil) {
					t.Errorf("key %q: an RSA key %v, its modulus prepared %v", k.ID, isRSA, k.Modulus != nil)
				}
			}
		})
	}
}

func TestParseKeySetFilters(t *testing.T) {
	small := testkit.RSAKey(t, 1024)
	good := testkit.RSAKey(t, 2048)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	doc := testkit.JWKS(t, map[string]crypto.PublicKey{"small": small.Public(), "good": good.Public(), "ec": ec.Public()})
	set, err := cache.ParseKeySet(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Keys("small")) != 0 {
		t.Error("a 1024-bit RSA key was kept")
	}
	if !strings.Contains(strings.Join(set.Skipped(), ";"), "shorter than 2048") {
		t.Errorf("skipped = %v, want the short key named", set.Skipped())
	}
	if ks := set.Keys("good"); len(ks) != 1 || !ks[0].Allows("RS256") || ks[0].Allows("ES256") {
		t.Errorf("good RSA key: %v", ks)
	}
	if ks := set.Keys("ec"); len(ks) != 1 || !ks[0].Allows("ES256") || ks[0].Allows("RS256") || ks[0].Allows("ES384") {
		t.Errorf("P-256 key: %v", ks)
	}

	for name, doc := range map[string]string{
		"symmetric only":  `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}`,
		"enc only":        `{"keys":[{"kty":"EC","crv":"P-256","use":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`,
		"empty":           `{"keys":[]}`,
		"not json":        `<html>`,
		"alg mismatch":    `{"keys":[{"kty":"EC","crv":"P-256","alg":"RS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`,
		"single key only": `{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`,
	} {
		if _, err := cache.ParseKeySet([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRemoteRotationAndOutage(t *testing.T) {
	k1, k2 := testkit.RSAKey(t, 2048), testkit.RSAKey(t, 2048)
	srv := testkit.NewIdP(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k1": k1.Public()}))
	r := cache.NewRemote(srv.URL(), cache.RemoteOptions{MinRefetch: time.Nanosecond})
	defer r.Close()
	ctx := context.Background()

	set, err := r.KeySet(ctx)
	if err != nil || len(set.Keys("k1")) != 1 {
		t.Fatalf("first fetch: %v %v", set, err)
	}
	if !r.Tried() {
		t.Error("Tried is false after a fetch")
	}

	// The IdP rotates: k2 added, k1 removed. An unknown kid refetches.
	srv.Set(testkit.JWKS(t, map[string]crypto.PublicKey{"k2": k2.Public()}), false)
	set, err = r.Refetch(ctx)
	if err != nil || len(set.Keys("k2")) != 1 || len(set.Keys("k1")) != 0 {
		t.Fatalf("after rotation: k1=%d k2=%d err=%v", len(set.Keys("k1")), len(set.Keys("k2")), err)
	}

	// The IdP goes down: the last good set keeps serving.
	srv.Set(nil, true)
	set, err = r.Refetch(ctx)
	if err != nil || len(set.Keys("k2")) != 1 {
		t.Fatalf("stale set not served while the IdP is down: %v", err)
	}
}

func TestRemoteNeverFetched(t *testing.T) {
	srv := testkit.NewIdP(t, nil)
	srv.Set(nil, true)
	r := cache.NewRemote(srv.URL(), cache.RemoteOptions{})
	_, err := r.KeySet(context.Background())
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "502") {
		t.Errorf("error does not say why: %v", err)
	}
	if !r.Tried() {
		t.Error("a failed first fetch must count as tried")
	}
}

// TestRemoteRefetchRateLimited: a flood of unknown kids costs one fetch per
// MinRefetch, and concurrent callers share one fetch.
func TestRemoteRefetchRateLimited(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	srv := testkit.NewIdP(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))
	r := cache.NewRemote(srv.URL(), cache.RemoteOptions{MinRefetch: time.Hour})
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.Refetch(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for range 10 {
		_, _ = r.Refetch(ctx)
	}
	if n := srv.Hits(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// TestRegistryCommit: a Remote handed out for a policy being loaded is
// neither shared nor started until that policy is committed, so a policy
// that fails to load leaves no fetch, no goroutine and no readiness change
// behind; a committed Remote is shared by later loads and closed once no
// committed policy uses it.
func TestRegistryCommit(t *testing.T) {
	k := testkit.RSAKey(t, 2048)
	srv := testkit.NewIdP(t, testkit.JWKS(t, map[string]crypto.PublicKey{"k": k.Public()}))
	done := make(chan error, 1)
	reg := cache.NewRegistry(cache.RemoteOptions{OnFetch: func(_ string, err error) {
		select {
		case done <- err:
		default:
		}
	}}, true)
	defer reg.Close()

	failed := reg.Remote(srv.URL(), time.Hour) // a load that then fails: never committed
	if failed.Tried() || srv.Hits() != 0 {
		t.Fatal("handing out a Remote fetched")
	}
	r := reg.Remote(srv.URL(), time.Hour)
	if r == failed {
		t.Fatal("an uncommitted Remote was shared")
	}
	reg.Commit([]*cache.Remote{r})
	if err := <-done; err != nil {
		t.Fatalf("background fetch after commit: %v", err)
	}
	if !r.Tried() || failed.Tried() {
		t.Fatalf("tried: committed %v, uncommitted %v", r.Tried(), failed.Tried())
	}
	if srv.Hits() != 1 {
		t.Fatalf("%d fetches, want 1 (the committed Remote's)", srv.Hits())
	}
	if reg.Remote(srv.URL(), time.Hour) != r {
		t.Error("the registry did not share the committed remote")
	}
	if reg.Remote(srv.URL(), 2*time.Hour) == r {
		t.Error("another refresh period shared the remote")
	}
	reg.Commit(nil)
	if reg.Remote(srv.URL(), time.Hour) == r {
		t.Error("Commit(nil) kept the remote")
	}
}

// TestRemoteRedactsPassword: a JWKS address with a password never shows it:
// not in URI (the metric label and log field), the fetch callback or any
// error.
func TestRemoteRedactsPassword(t *testing.T) {
	srv := testkit.NewIdP(t, nil)
	srv.Set(nil, true)
	uri := strings.Replace(srv.URL(), "http://", "http://jwks-user:hunter2-secret@", 1)
	fetched := make(chan string, 2)
	r := cache.NewRemote(uri, cache.RemoteOptions{OnFetch: func(u string, err error) {
		fetched <- u + " " + fmt.Sprint(err)
	}})
	_, err := r.KeySet(context.Background())
	seen := []string{<-fetched, r.URI(), fmt.Sprint(err)}
	for _, bad := range []string{"http://127.0.0.1:1/x", "::not a url"} {
		seen = append(seen, cache.Redacted(bad))
	}
	// The unreachable case: net/http's own error text.
	u2 := "http://u:hunter2-secret@127.0.0.1:1/jwks.json"
	_, err = cache.NewRemote(u2, cache.RemoteOptions{Timeout: 5 * time.Second}).KeySet(context.Background())
	seen = append(seen, fmt.Sprint(err))
	for _, s := range seen {
		if strings.Contains(s, "hunter2") {
			t.Errorf("password shown: %s", s)
		}
	}
	if !strings.Contains(r.URI(), "jwks-user:xxxxx@") {
		t.Errorf("URI() = %q, want the user kept and the password redacted", r.URI())
	}
}

func TestRemoteRejectsHugeDocument(t *testing.T) {
	srv := testkit.NewIdP(t, []byte(`{"keys":[`+strings.Repeat(" ", 2<<20)+`]}`))
	_, err := cache.NewRemote(srv.URL(), cache.RemoteOptions{}).KeySet(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

// TestParseKeySetRefusesUnsafeRSA: an RSA key whose exponent is 1 (every
// signature would be its own message), even, or over 2^31-1, or whose
// modulus is even, is skipped with the reason, as crypto/rsa refuses it at
// every verification; the keys kept have their modulus prepared.
func TestParseKeySetRefusesUnsafeRSA(t *testing.T) {
	good := testkit.RSAKey(t, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	n := b64(good.N.Bytes())
	even := new(big.Int).SetBit(good.N, 0, 0)
	keys := []string{fmt.Sprintf(`{"kty":"RSA","kid":"good","n":%q,"e":"AQAB"}`, n)}
	for kid, e := range map[string][]byte{"e1": {1}, "e2": {2}, "e65536": {1, 0, 0}, "e2^31": {0x80, 0, 0, 1}} {
		keys = append(keys, fmt.Sprintf(`{"kty":"RSA","kid":%q,"n":%q,"e":%q}`, kid, n, b64(e)))
	}
	keys = append(keys, fmt.Sprintf(`{"kty":"RSA","kid":"even","n":%q,"e":"AQAB"}`, b64(even.Bytes())))
	set, err := cache.ParseKeySet([]byte(`{"keys":[` + strings.Join(keys, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"e1", "e2", "e65536", "e2^31", "even"} {
		if len(set.Keys(kid)) != 0 {
			t.Errorf("key %s was kept", kid)
		}
	}
	skipped := strings.Join(set.Skipped(), "; ")
	for _, why := range []string{"RSA exponent 1 is not", "RSA exponent 2 is not", "RSA exponent 65536 is not", "RSA exponent 2147483649 is not", "RSA modulus is even"} {
		if !strings.Contains(skipped, why) {
			t.Errorf("skipped %q, want %q named", skipped, why)
		}
	}
	if ks := set.Keys("good"); len(ks) != 1 || ks[0].Modulus == nil || ks[0].Modulus.BitLen() != 2048 {
		t.Errorf("the good key: %v", ks)
	}
}
