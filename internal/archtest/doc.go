// Package archtest holds the architecture test: it reads the module's
// import graph with go list and fails when an arrow points the wrong way
// (see docs/architecture.md). It has no code of its own.
package archtest
