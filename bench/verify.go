package main

// This file holds the reference cost of first sight: one signature
// verification, measured as CPU time in this process between the rounds
// it is compared with.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"runtime"
	"strings"
	"sync"
	"time"
)

// verifier is one signed token of the algorithm and the work authn does to
// verify it: decode the signature, hash the signing input, verify.
type verifier struct {
	input, sig string
	check      func(digest, sig []byte) bool
}

var (
	verifiersOnce sync.Once
	verifiers     map[string]verifier
)

// newVerifiers signs a token-sized payload (about 600 bytes, as the
// harness's tokens) with a fresh RSA-2048 and P-256 key.
func newVerifiers() map[string]verifier {
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"rs","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"bench","exp":1900000000,"iat":1800000000,"iss":"https://rs.bench","sub":"user-123456","tenant":"acme","jti":"`+
			strings.Repeat("j", 300)+`"}`))
	digest := sha256.Sum256([]byte(input))
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	rsig, err := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	r, s, err := ecdsa.Sign(rand.Reader, ek, digest[:])
	if err != nil {
		panic(err)
	}
	esig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return map[string]verifier{
		"RS256": {input, base64.RawURLEncoding.EncodeToString(rsig), func(d, sig []byte) bool {
			return rsa.VerifyPKCS1v15(&rk.PublicKey, crypto.SHA256, d, sig) == nil
		}},
		"ES256": {input, base64.RawURLEncoding.EncodeToString(esig), func(d, sig []byte) bool {
			return ecdsa.Verify(&ek.PublicKey, d, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
		}},
	}
}

// verifyCPU returns the CPU time of one signature verification of alg
// (RS256, ES256) as authn does it (decode the signature, SHA-256 the
// signing input, verify with the standard library), over n of them on one
// locked OS thread timed by that thread's own CPU clock: what other
// processes on the machine do is not counted, as it is not in the
// servers' CPU per check it is compared with.
func verifyCPU(alg string, n int) time.Duration {
	verifiersOnce.Do(func() { verifiers = newVerifiers() })
	v, ok := verifiers[alg]
	if !ok {
		return 0
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0 := threadCPU()
	for range n {
		sig, err := base64.RawURLEncoding.DecodeString(v.sig)
		d := sha256.Sum256([]byte(v.input))
		if err != nil || !v.check(d[:], sig) {
			panic("bench: the reference signature does not verify")
		}
	}
	return (threadCPU() - t0) / time.Duration(n)
}
