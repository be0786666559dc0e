package extauthz

// This file holds CheckResponses in their wire form: what the gRPC service
// writes without building and marshalling a dozen messages per check.

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

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
// is the encoding's own rule (a message field that occurs more than once is
// merged; for a oneof, the same member twice is merged too), which every
// conforming parser, Envoy's C++ one and Go's, follows.
type wire struct {
	base, tail []byte
	bufs       [2]mem.Buffer // what the codec hands gRPC: base's shared box, then the tail's
	inline     [256]byte     // tail's bytes (a deny body and a long id fit): one allocation per answer
}

// response decodes w: the CheckResponse Envoy reads from it.
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
	base    []byte
	baseBuf mem.Buffer // base, boxed once for every answer that writes it
	allow   bool
}

// Field numbers of the messages a wire writes (envoy.service.auth.v3,
// envoy.config.core.v3, envoy.type.v3, google.rpc, google.protobuf.Struct).
const (
	fieldStatus          = 1 // CheckResponse.status (google.rpc.Status: code 1, message 2)
	fieldDenied          = 2 // CheckResponse.denied_response
	fieldOK              = 3 // CheckResponse.ok_response
	fieldDynamicMetadata = 4 // CheckResponse.dynamic_metadata
	fieldDeniedStatus    = 1 // DeniedHttpResponse.status (HttpStatus: code 1)
	fieldDeniedHeaders   = 2 // DeniedHttpResponse.headers
	fieldDeniedBody      = 3 // DeniedHttpResponse.body
	fieldOKHeaders       = 2 // OkHttpResponse.headers
	fieldOKRemove        = 5 // OkHttpResponse.headers_to_remove
	fieldStructFields    = 1 // Struct.fields (map entries: key 1, value 2)
	fieldStringValue     = 3 // Value.string_value
	fieldOptionHeader    = 1 // HeaderValueOption.header (HeaderValue: key 1, value 2)
	fieldOptionAppend    = 2 // HeaderValueOption.append (BoolValue; false is empty)
	fieldOptionAction    = 3 // HeaderValueOption.append_action
	overwriteIfExists    = 2 // HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
)

// appendBase appends what encode(d) writes, but for the deny body, to b,
// without building the messages: the encoding of a decision first seen
// (a new user's first token) costs little next to its verification. Each
// nested message's size is counted first, so everything is written once,
// into b. It reports false when a value is not valid UTF-8, which protobuf
// strings must be (encode's messages would fail to marshal).
func appendBase(b []byte, d *policy.Decision) ([]byte, bool) {
	valid := true
	check := func(s string) {
		if valid && !utf8.ValidString(s) {
			valid = false
		}
	}
	if d.Allow {
		b = appendLen(b, fieldStatus, 0) // code OK: an empty status
		okLen := 0
		for _, h := range d.SetHeaders {
			check(h.Name)
			check(h.Value)
			okLen += fieldSize(fieldOKHeaders, optionLen(h.Name, h.Value))
		}
		for _, h := range d.RemoveHeaders {
			check(h)
			okLen += fieldSize(fieldOKRemove, len(h))
		}
		b = appendLen(b, fieldOK, okLen)
		for _, h := range d.SetHeaders {
			b = appendOption(b, fieldOKHeaders, h.Name, h.Value)
		}
		for _, h := range d.RemoveHeaders {
			b = appendString(b, fieldOKRemove, h)
		}
	} else {
		check(string(d.Reason))
		code, httpCode := uint64(grpcCode(d.Status())), uint64(d.Status())
		b = appendLen(b, fieldStatus, varintSize(1, code)+fieldSize(2, len(d.Reason)))
		b = appendVarint(b, 1, code)
		b = appendString(b, 2, string(d.Reason))
		challenge := d.Challenge()
		retry := ""
		if d.RetryAfter > 0 {
			retry = strconv.Itoa(d.RetryAfter)
		}
		deniedLen := fieldSize(fieldDeniedStatus, varintSize(1, httpCode)) +
			fieldSize(fieldDeniedHeaders, optionLen("content-type", "application/json"))
		if challenge != "" {
			deniedLen += fieldSize(fieldDeniedHeaders, optionLen("www-authenticate", challenge))
		}
		if retry != "" {
			deniedLen += fieldSize(fieldDeniedHeaders, optionLen("retry-after", retry))
		}
		b = appendLen(b, fieldDenied, deniedLen)
		b = appendLen(b, fieldDeniedStatus, varintSize(1, httpCode))
		b = appendVarint(b, 1, httpCode)
		b = appendOption(b, fieldDeniedHeaders, "content-type", "application/json")
		if challenge != "" {
			b = appendOption(b, fieldDeniedHeaders, "www-authenticate", challenge)
		}
		if retry != "" {
			b = appendOption(b, fieldDeniedHeaders, "retry-after", retry)
		}
	}
	metaLen := 0
	d.EachMetadata(func(k, v string) {
		check(v)
		metaLen += fieldSize(fieldStructFields, entryLen(k, v))
	})
	if d.Limit.PerUnit > 0 {
		metaLen += fieldSize(fieldStructFields, limitEntryLen(d))
	}
	b = appendLen(b, fieldDynamicMetadata, metaLen)
	d.EachMetadata(func(k, v string) { b = appendEntry(b, k, v) })
	if d.Limit.PerUnit > 0 {
		b = appendLimitEntry(b, d)
	}
	return b, valid
}

// The ratelimit_limit entry: a Struct {requests_per_unit: number, unit:
// "MINUTE"}, the shape Envoy's RateLimit.Override.DynamicMetadata reads.
const (
	limitKey            = "ratelimit_limit"
	fieldNumberValue    = 2 // Value.number_value (double)
	fieldStructValue    = 5 // Value.struct_value
	perUnitKey, unitKey = "requests_per_unit", "unit"
)

// limitStructLen is the size of the limit's Struct.
func limitStructLen(d *policy.Decision) int {
	number := fieldSize(1, len(perUnitKey)) + fieldSize(2, protowire.SizeTag(fieldNumberValue)+protowire.SizeFixed64())
	return fieldSize(fieldStructFields, number) + fieldSize(fieldStructFields, entryLen(unitKey, d.Limit.Unit.String()))
}

// limitEntryLen is the size of the Struct.fields entry holding it.
func limitEntryLen(d *policy.Decision) int {
	return fieldSize(1, len(limitKey)) + fieldSize(2, fieldSize(fieldStructValue, limitStructLen(d)))
}

func appendLimitEntry(b []byte, d *policy.Decision) []byte {
	b = appendLen(b, fieldStructFields, limitEntryLen(d))
	b = appendString(b, 1, limitKey)
	b = appendLen(b, 2, fieldSize(fieldStructValue, limitStructLen(d)))
	b = appendLen(b, fieldStructValue, limitStructLen(d))
	number := fieldSize(1, len(perUnitKey)) + fieldSize(2, protowire.SizeTag(fieldNumberValue)+protowire.SizeFixed64())
	b = appendLen(b, fieldStructFields, number)
	b = appendString(b, 1, perUnitKey)
	b = appendLen(b, 2, protowire.SizeTag(fieldNumberValue)+protowire.SizeFixed64())
	b = protowire.AppendTag(b, fieldNumberValue, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(float64(d.Limit.PerUnit)))
	return appendEntry(b, unitKey, d.Limit.Unit.String())
}

// fieldSize is the encoded size of a length-delimited field of n bytes.
func fieldSize(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// varintSize is the encoded size of a varint field.
func varintSize(num protowire.Number, v uint64) int {
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

// appendLen appends the tag and length of a length-delimited field whose n
// bytes follow.
func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// optionLen is the size of a HeaderValueOption overwriting name with value,
// as overwrite makes it.
func optionLen(name, value string) int {
	return fieldSize(fieldOptionHeader, fieldSize(1, len(name))+fieldSize(2, len(value))) +
		fieldSize(fieldOptionAppend, 0) + varintSize(fieldOptionAction, overwriteIfExists)
}

// appendOption appends field num holding that HeaderValueOption.
func appendOption(b []byte, num protowire.Number, name, value string) []byte {
	b = appendLen(b, num, optionLen(name, value))
	b = appendLen(b, fieldOptionHeader, fieldSize(1, len(name))+fieldSize(2, len(value)))
	b = appendString(b, 1, name)
	b = appendString(b, 2, value)
	b = appendLen(b, fieldOptionAppend, 0) // BoolValue false: present, empty
	return appendVarint(b, fieldOptionAction, overwriteIfExists)
}

// entryLen is the size of the Struct.fields map entry key: string value.
func entryLen(key, value string) int {
	return fieldSize(1, len(key)) + fieldSize(2, fieldSize(fieldStringValue, len(value)))
}

// appendEntry appends Struct.fields holding that entry.
func appendEntry(b []byte, key, value string) []byte {
	b = appendLen(b, fieldStructFields, entryLen(key, value))
	b = appendString(b, 1, key)
	b = appendLen(b, 2, fieldSize(fieldStringValue, len(value)))
	return appendString(b, fieldStringValue, value)
}

// newEncoded returns d's encoding without its id, for every decision with
// d's identity. It panics when a value of d is not valid UTF-8 (the check
// recovers: a deny).
func newEncoded(d *policy.Decision) *encoded {
	anon := *d
	anon.ID, anon.IDHeader = "", "" // the tail writes the id, and the deny body with it
	base, ok := appendBase(make([]byte, 0, 512), &anon)
	if !ok {
		panic("extauthz: a decision value is not valid UTF-8")
	}
	return &encoded{base: base, baseBuf: mem.SliceBuffer(base), allow: d.Allow}
}

// wire returns d's answer: e's base, then d's own bytes (see appendTail).
func (e *encoded) wire(d *policy.Decision) *wire {
	w := &wire{base: e.base}
	w.tail = e.appendTail(w.inline[:0], d)
	w.bufs[0] = e.baseBuf
	if len(w.tail) > 0 {
		w.bufs[1] = mem.SliceBuffer(w.tail)
	}
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
		var buf [256]byte // the body, on the stack
		body := d.AppendBody(buf[:0])
		b = appendLen(b, fieldDenied, fieldSize(fieldDeniedBody, len(body)))
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
	b = appendLen(b, fieldDynamicMetadata, fieldSize(fieldStructFields, entryLen(key, value)))
	return appendEntry(b, key, value)
}

// appendOKHeader appends CheckResponse.ok_response with one header to
// overwrite, encoded as overwrite(name, value) is.
func appendOKHeader(b []byte, name, value string) []byte {
	b = appendLen(b, fieldOK, fieldSize(fieldOKHeaders, optionLen(name, value)))
	return appendOption(b, fieldOKHeaders, name, value)
}

// codec is the gRPC server's codec: a wire is written as it is, anything
// else (requests, the health service's messages) goes through the proto
// codec.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wire); ok {
		if len(w.tail) == 0 {
			return w.bufs[:1], nil
		}
		return w.bufs[:2], nil
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
