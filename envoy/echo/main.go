// Command echo is the upstream of the README's real-Envoy quickstart: it
// answers every request with what it received (method, path and query,
// headers, body) as one JSON object, so that a newcomer sees which headers
// Envoy applied from Portcullis's answer. It logs nothing and is not meant
// for anything but trying Portcullis out.
//
//	go run ./envoy/echo --addr 127.0.0.1:8080
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// received is what the upstream saw of one request.
type received struct {
	Method  string            `json:"method"`
	URI     string            `json:"uri"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body,omitempty"`
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := received{Method: r.Method, URI: r.RequestURI, Headers: map[string]string{}, Body: string(body)}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		rec.Headers[strings.ToLower(k)] = strings.Join(r.Header[k], ",")
	}
	rec.Headers["host"] = r.Host
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: http.HandlerFunc(echo), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(os.Stderr, "echo: answering every request with what it received, on http://%s\n", *addr)
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}
