package extauthz

// This file holds CheckResponses in their wire form: what the gRPC service
// writes without building and marshalling a dozen messages per check.

import (
	"context"
	"fmt"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis/portcullis/policy"
)

// wire is a CheckResponse in its protobuf encoding: base, shared by every
// decision with the same identity under the same snapshot and never
// modified, then tail, this decision's own bytes (its id). A protobuf parser
// merges a message field that occurs twice and adds a map entry or a
// repeated element that occurs again, so base followed by tail decodes as
// one response: base's metadata with the decision_id entry added, base's
// headers with the id header appended, base's deny with its body set. That
// is the encoding's rule, not a parser's habit: Envoy's C++ parser and Go's
// decode it alike.
type wire struct {
	base, tail []byte
	inline     [128]byte // tail's first bytes: one allocation per answer
}

// Response decodes w: the CheckResponse Envoy reads from it.
func (w *wire) response() (*authv3.CheckResponse, error) {
	out := &authv3.CheckResponse{}
	b := w.base
	if len(w.tail) > 0 {
		b = append(w.base[:len(w.base):len(w.base)], w.tail...)
	}
	if err := proto.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("decoding an encoded CheckResponse: %w", err)
	}
	return out, nil
}

// encoded is one cached response: the base encoding of a decision without
// its id, and whether it allows (where the tail goes).
type encoded struct {
	base  []byte
	allow bool
}

// Field numbers of the messages the tail writes into (envoy.service.auth.v3,
// envoy.config.core.v3, google.protobuf.Struct).
const (
	fieldDenied          = 2 // CheckResponse.denied_response
	fieldOK              = 3 // CheckResponse.ok_response
	fieldDynamicMetadata = 4 // CheckResponse.dynamic_metadata
	fieldDeniedBody      = 3 // DeniedHttpResponse.body
	fieldOKHeaders       = 2 // OkHttpResponse.headers
	fieldStructFields    = 1 // Struct.fields (map entries: key 1, value 2)
	fieldStringValue     = 3 // Value.string_value
	fieldOptionHeader    = 1 // HeaderValueOption.header (HeaderValue: key 1, value 2)
	fieldOptionAppend    = 2 // HeaderValueOption.append (BoolValue; false is empty)
	fieldOptionAction    = 3 // HeaderValueOption.append_action
	overwriteIfExists    = 2 // HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
)

// wire returns d's answer: e's base, then d's own bytes (see appendTail).
func (e *encoded) wire(d *policy.Decision) *wire {
	w := &wire{base: e.base}
	w.tail = e.appendTail(w.inline[:0], d)
	return w
}

// appendTail appends d's own bytes after e's base to b: the decision_id
// metadata entry, and on allow the id header, on deny the body (which names
// the id). A decision without an id has none on allow.
func (e *encoded) appendTail(b []byte, d *policy.Decision) []byte {
	if d.ID == "" && e.allow {
		return b
	}
	if d.ID != "" {
		b = appendMetadataString(b, "decision_id", d.ID)
	}
	switch {
	case !e.allow:
		body := d.Body()
		b = protowire.AppendTag(b, fieldDenied, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldDeniedBody)+protowire.SizeBytes(len(body))))
		b = protowire.AppendTag(b, fieldDeniedBody, protowire.BytesType)
		b = protowire.AppendBytes(b, body)
	case d.IDHeader != "":
		b = appendOKHeader(b, d.IDHeader, d.ID)
	}
	return b
}

// appendMetadataString appends CheckResponse.dynamic_metadata with the one
// entry key: string value.
func appendMetadataString(b []byte, key, value string) []byte {
	valueLen := protowire.SizeTag(fieldStringValue) + protowire.SizeBytes(len(value))
	entryLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	structLen := protowire.SizeTag(fieldStructFields) + protowire.SizeBytes(entryLen)
	b = protowire.AppendTag(b, fieldDynamicMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(structLen))
	b = protowire.AppendTag(b, fieldStructFields, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(entryLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(valueLen))
	b = protowire.AppendTag(b, fieldStringValue, protowire.BytesType)
	return protowire.AppendString(b, value)
}

// appendOKHeader appends CheckResponse.ok_response with one header to
// overwrite, encoded as overwrite(name, value) is.
func appendOKHeader(b []byte, name, value string) []byte {
	hvLen := protowire.SizeTag(1) + protowire.SizeBytes(len(name)) + protowire.SizeTag(2) + protowire.SizeBytes(len(value))
	optLen := protowire.SizeTag(fieldOptionHeader) + protowire.SizeBytes(hvLen) +
		protowire.SizeTag(fieldOptionAppend) + protowire.SizeBytes(0) +
		protowire.SizeTag(fieldOptionAction) + protowire.SizeVarint(overwriteIfExists)
	okLen := protowire.SizeTag(fieldOKHeaders) + protowire.SizeBytes(optLen)
	b = protowire.AppendTag(b, fieldOK, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(okLen))
	b = protowire.AppendTag(b, fieldOKHeaders, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(optLen))
	b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(hvLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, value)
	b = protowire.AppendTag(b, fieldOptionAppend, protowire.BytesType)
	b = protowire.AppendVarint(b, 0)
	b = protowire.AppendTag(b, fieldOptionAction, protowire.VarintType)
	return protowire.AppendVarint(b, overwriteIfExists)
}

// codec is the gRPC server's codec: a wire is written as it is, anything
// else (requests, the health service's messages) goes through the proto
// codec.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wire); ok {
		if len(w.tail) == 0 {
			return mem.BufferSlice{mem.SliceBuffer(w.base)}, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(w.base), mem.SliceBuffer(w.tail)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return c.proto.Name() }

// serviceDesc is Envoy's Authorization service as the generated code
// describes it, with a Check handler that answers with a wire.
var serviceDesc = func() grpc.ServiceDesc {
	sd := authv3.Authorization_ServiceDesc
	sd.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: checkHandler}}
	return sd
}()

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(authv3.CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(*Server)
	if interceptor == nil {
		return s.check(ctx, in), nil
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.check(ctx, req.(*authv3.CheckRequest)), nil
	})
}

// NewGRPCServer returns a gRPC server (made with opts) serving s as Envoy's
// Authorization service, writing each response from its cached encoding.
// Its unary interceptors, if any, see a response that is not a
// *CheckResponse: they must pass it on as it is. Other services registered
// on it are served as usual.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts[:len(opts):len(opts)], grpc.ForceServerCodecV2(codec{proto: encoding.GetCodecV2("proto")}))
	gs := grpc.NewServer(opts...)
	gs.RegisterService(&serviceDesc, s)
	return gs
}
