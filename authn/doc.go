// Package authn says who is calling: it reads the credentials a request
// presents (API keys and JWTs from the configured headers), checks an API
// key against a key index, and verifies a JWT against its issuer's JWK set
// (signature, algorithm allow-list, kid, iss, aud, exp, nbf, iat, size),
// through a cache of verified tokens.
//
// It never says what a caller may do: tiers, tenants, routes and headers
// are the policy's, which compiles authn's extractors and issuers from a
// policy file. It must never import policy, and nothing here logs a key or
// a token: failures are reason codes.
package authn
