// Package sandbox runs `portcullis demo`: an example brought up whole on
// this machine for a newcomer to try, and removed whole when they stop it.
// The self-service demo starts a throwaway PostgreSQL from the machine's own
// binaries (internal/pgtemp), migrates it, serves examples/self-service with
// the key-management API, the token page and forward-auth, makes a few demo
// keys through the API as a platform backend would, and prints sign-in links
// for the demo users and curl lines for the keys.
//
// It is wiring over the server and the key store for a demo: it must never
// be pointed at a real deployment's database or secrets (it reads the
// example's demo-only credentials), and no library may import it.
package sandbox
