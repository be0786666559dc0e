package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/stats"

	"github.com/portcullis/portcullis/internal/testkit"
)

// sentHandler closes sent once the client has written its request message.
type sentHandler struct{ sent chan struct{} }

func (h *sentHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *sentHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.OutPayload); ok {
		close(h.sent)
	}
}
func (h *sentHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (h *sentHandler) HandleConn(context.Context, stats.ConnStats) {}

// TestServeDrainsOnSIGTERM: a check in flight when SIGTERM arrives (held
// up by an IdP that has not answered yet) still gets its answer, readiness
// turns to 503 meanwhile, and the process exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	demo := testkit.Load(t, "three-tiers")
	dir := t.TempDir()
	copyExample(t, "three-tiers", dir)
	jwks, err := os.ReadFile(filepath.Join(dir, "customers-jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	hit, release := make(chan struct{}, 16), make(chan struct{})
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit <- struct{}{}
		<-release
		_, _ = w.Write(jwks)
	}))
	defer idp.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	editFile(t, filepath.Join(dir, "policy.yaml"), "{ file: customers-jwks.json }", "{ uri: "+idp.URL+"/jwks.json }")

	p := startServe(t, "--policy", filepath.Join(dir, "policy.yaml"))
	<-hit // the first fetch is under way and held
	if code, body := p.get(t, "/readyz"); code != 503 || !strings.Contains(body, "JWK set") {
		t.Errorf("/readyz before the first fetch: %d %q", code, body)
	}

	sh := &sentHandler{sent: make(chan struct{})}
	c := authv3.NewAuthorizationClient(dial(t, p.grpcAddr, grpc.WithTransportCredentials(insecureCreds()), grpc.WithStatsHandler(sh)))
	result := make(chan int, 1)
	go func() {
		tok := demo.Token(t, "alice-access", time.Now(), time.Hour, nil)
		result <- status(t, c, checkReq("POST", "/images", map[string]string{"x-api-key": demo.Key(t, "acme"), "authorization": "Bearer " + tok}))
	}()
	<-sh.sent

	p.signal(t, syscall.SIGTERM)
	p.waitLog(t, msgIs("signal received: draining"))
	if code, body := p.get(t, "/readyz"); code != 503 || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	close(release)
	if got := <-result; got != 200 {
		t.Errorf("in-flight check answered %d, want 200", got)
	}
	if code := p.waitExit(t); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }

// TestServeUnixSocketAndReflection: the sidecar setup over a unix socket,
// with reflection listing the services grpcurl and ghz need.
func TestServeUnixSocketAndReflection(t *testing.T) {
	demo := testkit.Load(t, "bearer-key")
	sock := filepath.Join(t.TempDir(), "portcullis.sock")
	p := startServe(t, "--policy", demo.Policy(), "--grpc-addr", "unix://"+sock, "--reflection")
	if p.grpcAddr != "unix://"+sock {
		t.Fatalf("grpc_addr %q", p.grpcAddr)
	}
	conn := dial(t, "unix://"+sock)
	c := authv3.NewAuthorizationClient(conn)
	if got := status(t, c, checkReq("GET", "/api/x", map[string]string{"authorization": "Bearer " + demo.Key(t, "app")})); got != 200 {
		t.Fatalf("check over unix socket: %d", got)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, lacks %s", names, want)
		}
	}
	_ = stream.CloseSend()
}

// pki is a throwaway CA with helpers to issue certificates.
type pki struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pem   []byte
}

func newPKI(t *testing.T) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &pki{ca: ca, caKey: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for a leaf with the given serial.
func (p *pki) issue(t *testing.T, serial int64, server bool) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestServeMTLS: clients need a certificate from the client CA; the server
// certificate is reloaded when its files change.
func TestServeMTLS(t *testing.T) {
	demo := testkit.Load(t, "bearer-key")
	dir := t.TempDir()
	ca := newPKI(t)
	cert, key := ca.issue(t, 100, true)
	certPath, keyPath, caPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	writeAtomic(t, certPath, cert)
	writeAtomic(t, keyPath, key)
	writeAtomic(t, caPath, ca.pem)
	p := startServe(t, "--policy", demo.Policy(), "--tls-cert", certPath, "--tls-key", keyPath, "--client-ca", caPath)

	roots := x509.NewCertPool()
	roots.AddCert(ca.ca)
	ccert, ckey := ca.issue(t, 200, false)
	clientPair, err := tls.X509KeyPair(ccert, ckey)
	if err != nil {
		t.Fatal(err)
	}
	req := checkReq("GET", "/api/x", map[string]string{"authorization": "Bearer " + demo.Key(t, "app")})
	serverSerial := func() int64 {
		conn := dial(t, p.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientPair}})))
		var pr peer.Peer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req, grpc.Peer(&pr))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("mTLS check: %v %v", resp, err)
		}
		return pr.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serverSerial(); s != 100 {
		t.Fatalf("server certificate serial %d, want 100", s)
	}

	// No client certificate: refused.
	conn := dial(t, p.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, req); err == nil {
		t.Fatal("a client without a certificate was served")
	}

	// Rotation: new files, new connections see the new certificate.
	cert2, key2 := ca.issue(t, 101, true)
	writeAtomic(t, keyPath, key2)
	writeAtomic(t, certPath, cert2)
	if s := serverSerial(); s != 101 {
		t.Fatalf("after rotation: serial %d, want 101", s)
	}
}
