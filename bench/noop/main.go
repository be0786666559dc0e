// Command noop is the baseline for the benchmarks: an ext_authz gRPC server
// that decides nothing — the physical limit of the same gRPC transport
// Portcullis uses. It logs its listening address the way `portcullis serve`
// does.
//
// With -response FILE (a CheckResponse in protobuf encoding, which the
// harness captures from portcullis for the workload at hand) it answers
// every Check with exactly those bytes, written as they are, so that the
// load client reads and decodes the same answer from both servers and the
// ratio measures what deciding costs. Without it, it answers OK with three
// headers. It runs with portcullis serve's transport options (stream
// workers) and garbage-collector headroom (-gc-headroom-mib), so that the
// two differ in deciding only.
//
// With -plain it is instead what a user would write with grpc-go and
// nothing else: grpc.NewServer() without options, Go's own collector
// settings, the generated Authorization service answering a fixed
// CheckResponse (the -response one, decoded once), which gRPC marshals for
// every answer: "what a user gets against a plain server".
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/portcullis/portcullis/internal/gcfloor"
)

type noop struct{}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		//lint:ignore SA1019 set for Envoy releases before append_action, as Portcullis does
		Append: wrapperspb.Bool(false)}
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return okResponse(), nil
}

func okResponse() *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &status.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			header("x-tenant-id", "acme"), header("x-auth-tier", "service"), header("x-credential-id", "bench"),
		}}},
	}
}

// plain is the Authorization service of -plain: one fixed answer,
// marshalled by gRPC for every Check.
type plain struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (p plain) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return p.resp, nil
}

// encoded is a response in its wire form, which codec writes as it is.
type encoded []byte

type codec struct{ encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// replay registers the Authorization service answering every Check with
// resp, after decoding the request as any server must.
func replay(gs *grpc.Server, resp encoded) {
	sd := authv3.Authorization_ServiceDesc
	sd.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		if err := dec(new(authv3.CheckRequest)); err != nil {
			return nil, err
		}
		return resp, nil
	}}}
	gs.RegisterService(&sd, noop{})
}

func main() {
	addr := flag.String("grpc-addr", "127.0.0.1:0", "listen address")
	respFile := flag.String("response", "", "answer every Check with this CheckResponse (protobuf encoding)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	headroom := flag.Uint("gc-headroom-mib", 64, "as portcullis serve's (and its default): the most heap growth between collections")
	plainServer := flag.Bool("plain", false, "a plain grpc-go server: no options, Go's collector settings, the answer marshalled per Check")
	flag.Parse()
	if !*plainServer {
		defer gcfloor.Keep(uint64(*headroom) << 20)()
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	fail := func(msg string, err error) {
		log.Error(msg, "error", err.Error())
		os.Exit(1)
	}
	var resp encoded
	if *respFile != "" {
		b, err := os.ReadFile(*respFile)
		if err != nil {
			fail("reading -response", err)
		}
		if err := proto.Unmarshal(b, &authv3.CheckResponse{}); err != nil {
			fail("-response is not a CheckResponse", err)
		}
		resp = b
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fail("listen", err)
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fail("creating -cpuprofile", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("starting the CPU profile", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))), // as portcullis serve's, and its GC headroom above
	}
	if *plainServer {
		p := plain{resp: okResponse()}
		if resp != nil {
			p.resp = &authv3.CheckResponse{}
			if err := proto.Unmarshal(resp, p.resp); err != nil {
				fail("-response is not a CheckResponse", err)
			}
		}
		gs := grpc.NewServer()
		authv3.RegisterAuthorizationServer(gs, p)
		serve(log, gs, lis)
		return
	}
	if resp != nil {
		gs := grpc.NewServer(append(opts, grpc.ForceServerCodecV2(codec{encoding.GetCodecV2("proto")}))...)
		replay(gs, resp)
		serve(log, gs, lis)
		return
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, noop{})
	serve(log, gs, lis)
}

func serve(log *slog.Logger, gs *grpc.Server, lis net.Listener) {
	// The gRPC health service, as portcullis serve has it: Envoy's cluster
	// health checks (envoy/envoy.yaml) ask for the Authorization service.
	hs := health.NewServer()
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	log.Info("portcullis serving", "grpc_addr", lis.Addr().String(), "noop", true)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	gs.GracefulStop()
}
