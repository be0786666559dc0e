// Package keys owns API keys as data: what an entry holds (never the
// plaintext: its SHA-256 digest, the one digest function of the project),
// how keys files are read (YAML, or JSON streamed for a million keys) and
// edited (under a lock, validated, written to a temporary file, synced and
// renamed over the old one), how new keys are minted, the immutable index
// a check looks keys up in, and per-key usage accounting. The index holds no
// pointer per key (digests in one array, records of offsets and numbers,
// ids and users in one text arena), so that a million keys cost the garbage
// collector nothing; the strings it returns point into that arena, which is
// never modified.
//
// It decides nothing: whether a key may reach a route is the policy's
// business, and the check's reasons are authn's. It never imports policy
// or authn (a keys file is validated against a policy through a callback
// the caller supplies), and it never logs or returns a plaintext key
// except from New, whose caller shows it once.
package keys
