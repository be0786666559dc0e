package server

// This file holds TLS for the gRPC listener, re-read from files as they rotate.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// tlsFiles serves the gRPC listener's TLS configuration from files,
// re-reading them when their modification times change (cert-manager and
// Kubernetes Secret mounts rotate them in place). A rotation that fails to
// load keeps the previous configuration and is retried on the next
// handshake.
type tlsFiles struct {
	cert, key, clientCA string

	mu      sync.Mutex
	stamp   string
	current *tls.Config
}

func (f *tlsFiles) serverConfig() (*tls.Config, error) {
	if _, err := f.config(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return f.config()
		},
	}, nil
}

// config returns the configuration for the files as they are now.
func (f *tlsFiles) config() (*tls.Config, error) {
	stamp := f.stampNow()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.current != nil && stamp == f.stamp {
		return f.current, nil
	}
	c, err := f.load()
	if err != nil {
		if f.current != nil {
			return f.current, nil
		}
		return nil, err
	}
	f.current, f.stamp = c, stamp
	return c, nil
}

func (f *tlsFiles) stampNow() string {
	s := ""
	for _, p := range []string{f.cert, f.key, f.clientCA} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.ModTime().UnixNano(), fi.Size())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

func (f *tlsFiles) load() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("loading TLS certificate: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, Time: time.Now}
	if f.clientCA != "" {
		pem, err := os.ReadFile(f.clientCA)
		if err != nil {
			return nil, fmt.Errorf("reading client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate", f.clientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}
