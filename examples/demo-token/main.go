// Command demo-token prints a demo credential of an example, for trying the
// examples by hand (the README walk-through): a fresh token minted with the
// example's demo issuer key, or a demo API key.
//
//	go run ./examples/demo-token three-tiers token alice-access
//	go run ./examples/demo-token three-tiers key acme
//	go run ./examples/demo-token self-service management console
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/internal/testkit"
)

func main() {
	if len(os.Args) != 4 || (os.Args[2] != "token" && os.Args[2] != "key" && os.Args[2] != "management") {
		fmt.Fprintln(os.Stderr, "usage: demo-token EXAMPLE token NAME | EXAMPLE key ID | EXAMPLE management ID")
		os.Exit(2)
	}
	demo, err := testkit.LoadDir(filepath.Join("examples", os.Args[1]))
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-token: %v (run from the repository root)\n", err)
		os.Exit(1)
	}
	if os.Args[2] == "key" || os.Args[2] == "management" {
		k, ok := demo.Keys[os.Args[3]]
		if os.Args[2] == "management" {
			k, ok = demo.ManagementTokens[os.Args[3]]
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "demo-token: no demo %s %q\n", os.Args[2], os.Args[3])
			os.Exit(1)
		}
		fmt.Println(k)
		return
	}
	tok, err := demo.Mint(os.Args[3], time.Now(), time.Hour, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo-token: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(tok)
}
