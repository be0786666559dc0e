package extauthz

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
)

// RemoveHeader is the response header that lists, comma-separated, the
// request headers a forward-auth proxy must clear before the upstream
// (forward-auth cannot remove headers by itself; the shipped nginx and
// Traefik configurations clear them).
const RemoveHeader = "x-portcullis-remove"

// ReasonHeader carries the reason code on a forward-auth deny, so a proxy
// that drops the body (nginx auth_request) can still log or relay it.
const ReasonHeader = "x-portcullis-reason"

// envoyRemoveHeader is Envoy's own ext_authz HTTP-service convention for the
// same list.
const envoyRemoveHeader = "x-envoy-auth-headers-to-remove"

// Forward-auth modes, chosen per request by the headers present.
const (
	ModeTraefik = "traefik" // X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host
	ModeNginx   = "nginx"   // X-Original-URI (and X-Original-Method)
	ModeEnvoy   = "envoy"   // the request itself, under PathPrefix
)

// HTTPHandler answers forward-auth requests from Traefik, nginx and
// ingress-nginx (auth_request), or Envoy's ext_authz http_service, with
// the same decisions as the gRPC Server. It is safe for concurrent use.
type HTTPHandler struct {
	engine   *policy.Engine
	observer Observer
	mode     string
	prefix   string
	trusted  []netip.Prefix
}

// HTTPOptions configure an HTTPHandler.
type HTTPOptions struct {
	// Mode pins one forward-auth mode (ModeTraefik, ModeNginx, ModeEnvoy);
	// "" or "auto" picks it per request from the headers present. Pin it
	// when the proxy might pass a client's own X-Forwarded-Uri or
	// X-Original-URI through (Envoy http_service with permissive
	// allowed_headers).
	Mode string
	// PathPrefix is stripped from the request path in Envoy mode
	// (http_service.path_prefix).
	PathPrefix string
	// TrustedProxies are the peers allowed to ask; default loopback only.
	// Anyone else is denied, since the forwarded headers describe a request
	// only a proxy can vouch for.
	TrustedProxies []netip.Prefix
}

// DefaultTrustedProxies is loopback only.
var DefaultTrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

var _ http.Handler = (*HTTPHandler)(nil)

// NewHTTPHandler returns a forward-auth handler deciding with engine and
// reporting to observer (which may be nil).
// It fails only for an unknown mode.
func NewHTTPHandler(engine *policy.Engine, observer Observer, opts HTTPOptions) (*HTTPHandler, error) {
	switch opts.Mode {
	case "auto":
		opts.Mode = ""
	case "", ModeTraefik, ModeNginx, ModeEnvoy:
	default:
		return nil, fmt.Errorf("unknown forward-auth mode %q (want auto, traefik, nginx or envoy)", opts.Mode)
	}
	if len(opts.TrustedProxies) == 0 {
		opts.TrustedProxies = DefaultTrustedProxies
	}
	return &HTTPHandler{engine: engine, observer: observer, mode: opts.Mode, prefix: opts.PathPrefix, trusted: opts.TrustedProxies}, nil
}

// ServeHTTP answers 200 with the normalized headers as response headers
// (and RemoveHeader), or the deny status with the JSON body. It never
// passes a request on; a panic is a 503 deny.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var d policy.Decision
	var c Check
	mode := ""
	defer func() {
		if p := recover(); p != nil {
			d = policy.Deny(policy.ReasonInternal)
			slog.ErrorContext(r.Context(), "forward-auth check panicked", "panic", p)
		}
		writeDecision(w, &d, mode)
		if h.observer != nil {
			h.observer.Observe(r.Context(), c, &d, time.Since(start))
		}
	}()
	req, m, reason := h.decode(r)
	mode = m
	c = Check{Transport: "http", RequestID: req.Headers["x-request-id"], Method: req.Method, Path: withoutQuery(req.Path)}
	if reason != "" {
		d = policy.Deny(reason)
		return
	}
	d = h.engine.Decide(r.Context(), req)
}

// decode derives the original request from the forward-auth request.
func (h *HTTPHandler) decode(r *http.Request) (policy.Request, string, policy.Reason) {
	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	req := policy.Request{Headers: headers}
	if !h.trustedPeer(r.RemoteAddr) {
		return req, "", policy.ReasonUntrustedProxy
	}
	mode := h.mode
	if mode == "" {
		switch {
		case headers["x-forwarded-uri"] != "" || headers["x-forwarded-method"] != "":
			mode = ModeTraefik
		case headers["x-original-uri"] != "":
			mode = ModeNginx
		default:
			mode = ModeEnvoy
		}
	}
	switch mode {
	case ModeTraefik:
		req.Method, req.Path, req.Host = headers["x-forwarded-method"], headers["x-forwarded-uri"], headers["x-forwarded-host"]
		return req, ModeTraefik, ""
	case ModeNginx:
		req.Method, req.Path, req.Host = headers["x-original-method"], headers["x-original-uri"], headers["x-original-host"]
		if req.Method == "" {
			req.Method = r.Method
		}
		if req.Host == "" {
			req.Host = r.Host
		}
		return req, ModeNginx, ""
	}
	path := r.URL.RequestURI()
	if h.prefix != "" {
		rest, ok := strings.CutPrefix(path, h.prefix)
		if !ok {
			return req, ModeEnvoy, policy.ReasonBadRequest
		}
		path = rest
	}
	req.Method, req.Path, req.Host = r.Method, path, r.Host
	return req, ModeEnvoy, ""
}

func (h *HTTPHandler) trustedPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range h.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func writeDecision(w http.ResponseWriter, d *policy.Decision, mode string) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	if d.Allow {
		for _, s := range d.SetHeaders {
			hdr.Set(s.Name, s.Value)
		}
		if len(d.RemoveHeaders) > 0 {
			hdr.Set(RemoveHeader, strings.Join(d.RemoveHeaders, ","))
			if mode == ModeEnvoy {
				hdr.Set(envoyRemoveHeader, strings.Join(d.RemoveHeaders, ","))
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set(ReasonHeader, string(d.Reason))
	if c := d.Challenge(); c != "" {
		hdr.Set("WWW-Authenticate", c)
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body())
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or addresses.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
