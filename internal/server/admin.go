package server

// This file holds the admin listener's routes.

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
)

// adminMux serves /healthz (alive), /readyz (ready to decide), /metrics,
// /keys/usage (per-key check counts; key ids only, never secrets) and, with
// --pprof, Go's profiles.
func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /keys/usage", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.usage.Report())
	})
	if s.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return mux
}

// ready says why the server cannot decide yet, or nil: it is draining, or
// a key set of the serving policy has not finished its first fetch.
func (s *Server) ready() error {
	switch {
	case s.draining.Load():
		return errors.New("shutting down")
	case !s.engine.Snapshot().JWKSTried():
		return errors.New("waiting for the first fetch of every JWK set")
	case s.keys != nil && !s.keys.isSettled():
		return errors.New("waiting for the key store's keys")
	}
	return nil
}
