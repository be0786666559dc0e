package extauthz

// This file holds the ext_authz v3 gRPC service: CheckRequest in, CheckResponse out.

import (
	"context"
	"hash/maphash"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
)

// Decider answers authorization questions; *policy.Engine is one. It must be
// safe for concurrent use and must never fail: a failure is a deny.
type Decider interface {
	Decide(ctx context.Context, req policy.Request) policy.Decision
}

// Observer is told of every decision, after it is made, and of every panic
// an adapter recovered from. Implementations must be safe for concurrent
// use and must not block.
type Observer interface {
	// Begin is told of a check before it is decided, with the request's
	// headers (a tracer reads the trace context Envoy propagates in them),
	// and returns the context to decide it in and to pass to Observe.
	Begin(ctx context.Context, headers map[string]string) context.Context
	Observe(ctx context.Context, c CheckInfo, d policy.Decision, elapsed time.Duration)
	// Panicked reports a panic recovered in where ("grpc", "forward-auth"),
	// with the stack of the goroutine that panicked. The check was denied.
	Panicked(ctx context.Context, where string, value any, stack []byte)
}

// CheckInfo describes one check for an Observer: never a credential.
type CheckInfo struct {
	Transport string // "grpc" or "http"
	RequestID string
	Method    string
	Path      string    // without query string, which may hold secrets
	Done      time.Time // when the answer was ready: the clock the observer records usage by (one reading of it a check, not two)
}

// Server is the ext_authz v3 gRPC service. It is safe for concurrent use.
type Server struct {
	decider  Decider
	observer Observer
	// responses holds encoded CheckResponses by what determines them, so
	// the same caller's next check reuses its encoding instead of making it
	// again. An encoding is never modified (gRPC only reads it).
	responses *cache.Clock[respKey, *encoded]
	// seen holds, by hash, identities whose answer missed the cache once
	// lately: an answer is cached on its identity's second miss, so a
	// stream of identities seen once (tokens at first sight, each naming
	// a new user) costs no insert and evicts no answer in use.
	seen []atomic.Uint64
	seed maphash.Seed
}

// respKey is everything an encoded response depends on: the snapshot
// (header names) and the decision's outcome and identity.
type respKey struct {
	policy, tier, tenant, kind, user, role, credential string
	reason                                             reason.Code
	limit                                              policy.Limit // a plan or a key's limit changes without a new policy version
	cost                                               int64
	wallet                                             string
	retryAfter                                         int
}

// responseCacheSize bounds the encoded-response cache (entries are a few
// hundred bytes).
const responseCacheSize = 4096

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer returns a Server deciding with decider and reporting to
// observer (which may be nil).
func NewServer(decider Decider, observer Observer) *Server {
	return &Server{decider: decider, observer: observer, responses: cache.NewClock[respKey, *encoded](responseCacheSize),
		seen: make([]atomic.Uint64, 4*responseCacheSize), seed: maphash.MakeSeed()}
}

// Check answers one CheckRequest: decode, decide (on one pinned snapshot),
// encode. It always returns a response and a nil error: decode failures and
// panics are denies. It answers what NewGRPCServer's service writes, decoded
// (a caller in this process, not Envoy).
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, err := s.check(ctx, req).response()
	if err != nil { // not reached: the wire form is protobuf's encoding
		return &authv3.CheckResponse{Status: &status.Status{Code: int32(codes.Unavailable), Message: string(reason.Internal)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}}}}, nil
	}
	return resp, nil
}

// check is Check with the response in its wire form.
func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (w *wire) {
	start := time.Now()
	var d policy.Decision
	var info CheckInfo
	defer func() {
		if p := recover(); p != nil {
			d = policy.Deny(reason.Internal)
			d.ID = info.RequestID
			w = newEncoded(&d).wire(&d)
			recovered(ctx, s.observer, "grpc", p)
		}
		if s.observer != nil {
			info.Done = time.Now()
			s.observer.Observe(ctx, info, d, info.Done.Sub(start))
		}
	}()
	preq, ok := Decode(req)
	if s.observer != nil {
		ctx = s.observer.Begin(ctx, preq.Headers)
	}
	preq.ID = policy.DecisionID(requestID(req, preq.Headers))
	info = CheckInfo{Transport: "grpc", RequestID: preq.ID, Method: preq.Method, Path: withoutQuery(preq.Path)}
	if !ok {
		d = policy.Deny(reason.BadRequest)
		d.ID = preq.ID
	} else {
		d = s.decider.Decide(ctx, preq)
	}
	return s.response(&d)
}

// response encodes d, reusing the encoding of an earlier decision with the
// same identity under the same snapshot: only the bytes that carry the
// decision id are made anew.
func (s *Server) response(d *policy.Decision) *wire {
	if d.PolicyVersion == "" || d.Volatile { // not from a snapshot, or its own per request: encoded afresh
		return newEncoded(d).wire(d)
	}
	k := respKey{d.PolicyVersion, d.Tier, d.Tenant, d.TenantKind, d.User, d.Role, d.Credential, d.Reason, d.Limit, d.Cost, d.Wallet, d.RetryAfter}
	e, hit := s.responses.Get(k)
	if !hit {
		e = newEncoded(d)
		if s.secondMiss(&k) {
			s.responses.Add(k, e)
		}
	}
	return e.wire(d)
}

// secondMiss reports whether k's answer missed the cache before, lately
// (its hash is still in seen, which a later miss of another identity may
// have overwritten), and records this miss. A false answer only costs an
// encoding; a true one for another identity (a hash collision) only
// caches an answer.
func (s *Server) secondMiss(k *respKey) bool {
	var h maphash.Hash
	h.SetSeed(s.seed)
	for _, f := range [...]string{k.policy, k.user, k.credential, k.tenant, k.role, k.tier} {
		h.WriteString(f)
		h.WriteByte(0)
	}
	x := h.Sum64()
	slot := &s.seen[x%uint64(len(s.seen))]
	if slot.Load() == x {
		return true
	}
	slot.Store(x)
	return false
}

// Decode lifts a CheckRequest's HTTP attributes into a policy.Request. It
// reports false when the request carries no HTTP attributes. Headers come
// from attributes.request.http.headers, or from header_map when Envoy sends
// that instead (repeated names joined with ",", as Envoy does).
func Decode(req *authv3.CheckRequest) (policy.Request, bool) {
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return policy.Request{}, false
	}
	headers := lowerKeys(h.GetHeaders())
	if len(headers) == 0 {
		if hm := h.GetHeaderMap(); hm != nil {
			headers = make(map[string]string, len(hm.GetHeaders()))
			for _, hv := range hm.GetHeaders() {
				k, v := strings.ToLower(hv.GetKey()), hv.GetValue()
				if v == "" {
					v = string(hv.GetRawValue())
				}
				if prev, dup := headers[k]; dup {
					v = prev + "," + v
				}
				headers[k] = v
			}
		}
	}
	r := policy.Request{Method: h.GetMethod(), Path: h.GetPath(), Host: h.GetHost(), Headers: headers}
	if r.Method == "" {
		r.Method = headers[":method"]
	}
	if r.Path == "" {
		r.Path = headers[":path"]
	}
	if r.Host == "" {
		r.Host = headers[":authority"]
	}
	return r, true
}

// lowerKeys returns m itself when its keys are lower-case already (Envoy
// sends them so), else a lower-cased copy. The engine only reads it.
func lowerKeys(m map[string]string) map[string]string {
	for k := range m {
		if strings.ToLower(k) != k {
			out := make(map[string]string, len(m))
			for k, v := range m {
				lk := strings.ToLower(k)
				if prev, dup := out[lk]; dup {
					v = prev + "," + v
				}
				out[lk] = v
			}
			return out
		}
	}
	return m
}

func requestID(req *authv3.CheckRequest, h map[string]string) string {
	if id := h["x-request-id"]; id != "" {
		return id
	}
	return req.GetAttributes().GetRequest().GetHttp().GetId()
}

func withoutQuery(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

// grpcCode maps a deny's HTTP status to the CheckResponse status code.
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case 200:
		return codes.OK
	case 400:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 429:
		return codes.ResourceExhausted
	default:
		return codes.Unavailable
	}
}
