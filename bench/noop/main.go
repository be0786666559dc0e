// Command noop is the baseline for the benchmarks: an ext_authz gRPC server
// that answers every Check with OK and three headers, and does nothing else
// — the physical limit of the same gRPC transport Portcullis uses. It logs
// its listening address the way `portcullis serve` does.
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type noop struct{}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		//lint:ignore SA1019 set for Envoy releases before append_action, as Portcullis does
		Append: wrapperspb.Bool(false)}
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			header("x-tenant-id", "acme"), header("x-auth-tier", "service"), header("x-credential-id", "bench"),
		}}},
	}, nil
}

func main() {
	addr := flag.String("grpc-addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "error", err.Error())
		os.Exit(1)
	}
	gs := grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4<<20))
	authv3.RegisterAuthorizationServer(gs, noop{})
	go func() { _ = gs.Serve(lis) }()
	log.Info("portcullis serving", "grpc_addr", lis.Addr().String(), "noop", true)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	gs.GracefulStop()
}
