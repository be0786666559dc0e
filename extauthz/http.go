package extauthz

// This file holds forward-auth over HTTP: the modes, and how each reads the
// request being checked.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/reason"
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

// Forward-auth modes: which headers describe the request being checked.
// Each mode reads its own family and nothing else: a header of another
// family, whoever sent it, never changes the decision.
const (
	// ModeTraefik: X-Forwarded-Method, X-Forwarded-Uri and X-Forwarded-Host
	// (Traefik's ForwardAuth).
	ModeTraefik = "traefik"
	// ModeNginx: X-Original-Method, X-Original-URI and X-Original-Host, as
	// the shipped nginx auth_request configuration sets them.
	ModeNginx = "nginx"
	// ModeIngressNginx: X-Original-Method and X-Original-URL
	// (<scheme>://<host><request uri>), as ingress-nginx's auth-url sends them.
	ModeIngressNginx = "ingress-nginx"
	// ModeEnvoy: the request itself, under PathPrefix (Envoy's ext_authz
	// http_service, Istio's envoyExtAuthzHttp).
	ModeEnvoy = "envoy"
	// ModeAuto picks traefik, nginx or ingress-nginx from the one family
	// present; a request carrying none, or more than one, is a 400. It
	// never picks envoy, whose requests carry no marker a client could not
	// send too. Pin the mode instead whenever the proxy is known.
	ModeAuto = "auto"
)

// modes lists the accepted Mode values, for errors and flags.
var modes = []string{ModeAuto, ModeTraefik, ModeNginx, ModeIngressNginx, ModeEnvoy}

// HTTPHandler answers forward-auth requests from Traefik, nginx and
// ingress-nginx (auth_request), or Envoy's ext_authz http_service, with
// the same decisions as the gRPC Server. It is safe for concurrent use.
type HTTPHandler struct {
	decider  Decider
	observer Observer
	mode     string
	prefix   string
	trusted  []netip.Prefix
	warn     *warnLimiter
}

// HTTPOptions configure an HTTPHandler.
type HTTPOptions struct {
	// Mode names the proxy in front (ModeTraefik, ModeNginx,
	// ModeIngressNginx, ModeEnvoy) or ModeAuto; "" is ModeAuto.
	Mode string
	// PathPrefix is stripped from the request path in Envoy mode
	// (http_service.path_prefix).
	PathPrefix string
	// TrustedProxies are the peers allowed to ask; default loopback only.
	// Anyone else is denied, since the forwarded headers describe a request
	// only a proxy can vouch for.
	TrustedProxies []netip.Prefix
	// Logger receives a rate-limited warning when proxies send requests
	// that cannot be checked (a missing X-Original-Method, two header
	// families), which is a proxy configuration mistake. Nil: no warnings.
	Logger *slog.Logger
}

// DefaultTrustedProxies returns the default trusted proxies: loopback only.
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

var _ http.Handler = (*HTTPHandler)(nil)

// NewHTTPHandler returns a forward-auth handler deciding with decider and
// reporting to observer (which may be nil). It fails only for an unknown
// mode.
func NewHTTPHandler(decider Decider, observer Observer, opts HTTPOptions) (*HTTPHandler, error) {
	if opts.Mode == "" {
		opts.Mode = ModeAuto
	}
	if !slices.Contains(modes, opts.Mode) {
		return nil, fmt.Errorf("unknown forward-auth mode %q (want %s)", opts.Mode, strings.Join(modes, ", "))
	}
	trusted := slices.Clone(opts.TrustedProxies)
	if len(trusted) == 0 {
		trusted = DefaultTrustedProxies()
	}
	return &HTTPHandler{decider: decider, observer: observer, mode: opts.Mode, prefix: opts.PathPrefix,
		trusted: trusted, warn: newWarnLimiter(opts.Logger, 10*time.Second)}, nil
}

// ServeHTTP answers 200 with the normalized headers as response headers
// (and RemoveHeader), or the deny status with the JSON body. It never
// passes a request on; a panic is a 503 deny.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var d policy.Decision
	var c CheckInfo
	mode := ""
	ctx := r.Context()
	defer func() {
		if p := recover(); p != nil {
			d = policy.Deny(reason.Internal)
			d.ID = c.RequestID
			recovered(ctx, h.observer, "forward-auth", p)
		}
		writeDecision(w, &d, mode)
		if h.observer != nil {
			c.Done = time.Now()
			h.observer.Observe(ctx, c, d, c.Done.Sub(start))
		}
	}()
	req, m, problem := h.decode(r)
	mode = m
	if h.observer != nil {
		ctx = h.observer.Begin(ctx, req.Headers)
	}
	req.ID = policy.DecisionID(req.Headers["x-request-id"])
	c = CheckInfo{Transport: "http", RequestID: req.ID, Method: req.Method, Path: withoutQuery(req.Path)}
	switch {
	case problem == errUntrusted:
		d = policy.Deny(reason.UntrustedProxy)
	case problem != "":
		h.warn.warn(ctx, problem)
		d = policy.Deny(reason.BadRequest)
	default:
		d = h.decider.Decide(ctx, req)
	}
	d.ID = req.ID
}

// errUntrusted is decode's problem for a peer outside the trusted proxies.
const errUntrusted = "untrusted proxy"

// decode derives the original request from the forward-auth request, in
// the handler's mode. problem is "" when the request can be checked, else
// what is wrong with it (for the operator's log, never for the client).
func (h *HTTPHandler) decode(r *http.Request) (req policy.Request, mode, problem string) {
	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	req.Headers = headers
	if !h.trustedPeer(r.RemoteAddr) {
		return req, "", errUntrusted
	}
	mode = h.mode
	if mode == ModeAuto {
		if mode, problem = detectMode(r.Header); problem != "" {
			return req, "", problem
		}
	}
	switch mode {
	case ModeTraefik:
		problem = fromFamily(r.Header, &req, "X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-Host")
	case ModeNginx:
		problem = fromFamily(r.Header, &req, "X-Original-Method", "X-Original-Uri", "X-Original-Host")
	case ModeIngressNginx:
		problem = fromOriginalURL(r.Header, &req)
	default:
		problem = h.fromRequest(r, &req)
	}
	return req, mode, problem
}

// families maps each auto-detectable mode to the headers that mark it.
// X-Original-Method is shared by nginx and ingress-nginx, so it marks
// neither.
var families = []struct {
	mode    string
	markers []string
}{
	{ModeTraefik, []string{"X-Forwarded-Method", "X-Forwarded-Uri"}},
	{ModeNginx, []string{"X-Original-Uri", "X-Original-Host"}},
	{ModeIngressNginx, []string{"X-Original-Url"}},
}

// detectMode picks the one header family present. ingress-nginx sends
// X-Original-URI beside X-Original-URL when auth-method is set; the two
// together are one family only when they name the same request.
func detectMode(h http.Header) (string, string) {
	var found []string
	for _, f := range families {
		if slices.ContainsFunc(f.markers, func(m string) bool { return len(h.Values(m)) > 0 }) {
			found = append(found, f.mode)
		}
	}
	if slices.Equal(found, []string{ModeNginx, ModeIngressNginx}) && len(h.Values("X-Original-Host")) == 0 {
		_, uri, ok := splitOriginalURL(h.Get("X-Original-Url"))
		if ok && h.Get("X-Original-Uri") == uri {
			return ModeIngressNginx, ""
		}
	}
	switch len(found) {
	case 1:
		return found[0], ""
	case 0:
		return "", "auto mode: the request carries no X-Forwarded-Uri, X-Original-URI or X-Original-URL; " +
			"set the proxy's headers, or pin --http-mode (envoy for Envoy's http_service)"
	}
	return "", fmt.Sprintf("auto mode: the request carries the headers of %s at once; "+
		"pin --http-mode and make the proxy clear the other families", strings.Join(found, " and "))
}

// single returns the one value of header name; ok is false when it is sent
// several times (a forwarded request is described once, or not believed).
func single(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", true
	case 1:
		return vs[0], true
	}
	return "", false
}

// fromFamily fills req's method, path and host from three headers. The
// method and the URI are required: a proxy that does not send them is
// misconfigured, and no method or path is ever assumed.
func fromFamily(h http.Header, req *policy.Request, method, uri, host string) string {
	var ok [3]bool
	req.Method, ok[0] = single(h, method)
	req.Path, ok[1] = single(h, uri)
	req.Host, ok[2] = single(h, host)
	if ok != [3]bool{true, true, true} {
		return fmt.Sprintf("%s, %s or %s is sent more than once", method, uri, host)
	}
	if req.Method == "" || req.Path == "" {
		return fmt.Sprintf("the request lacks %s or %s: configure the proxy to send both", method, uri)
	}
	return ""
}

// fromOriginalURL fills req from ingress-nginx's X-Original-Method and
// X-Original-URL. A client's X-Original-URI or X-Original-Host is never
// read in this mode.
func fromOriginalURL(h http.Header, req *policy.Request) string {
	m, ok1 := single(h, "X-Original-Method")
	u, ok2 := single(h, "X-Original-Url")
	if !ok1 || !ok2 {
		return "X-Original-Method or X-Original-URL is sent more than once"
	}
	if m == "" || u == "" {
		return "the request lacks X-Original-Method or X-Original-URL: ingress-nginx's auth-url sends both"
	}
	host, uri, ok := splitOriginalURL(u)
	if !ok {
		return "X-Original-URL is not <http|https>://<host><path>"
	}
	req.Method, req.Path, req.Host = m, uri, host
	return ""
}

// splitOriginalURL splits "<scheme>://<host><request uri>" without decoding
// anything: the request URI is passed on exactly as the client sent it, so
// the engine sees (and refuses) what the upstream would see. A userinfo
// part, another scheme, or a request URI not starting with "/" is refused.
func splitOriginalURL(u string) (host, uri string, ok bool) {
	scheme, rest, found := strings.Cut(u, "://")
	if !found || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return "", "", false
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", false
	}
	host, uri = rest[:i], rest[i:]
	if strings.ContainsAny(host, "@?#\\") {
		return "", "", false
	}
	return host, uri, true
}

// fromRequest fills req from the forward-auth request itself (Envoy's
// http_service), with PathPrefix removed from the raw request target.
func (h *HTTPHandler) fromRequest(r *http.Request, req *policy.Request) string {
	path := r.RequestURI
	if h.prefix != "" {
		rest, ok := strings.CutPrefix(path, h.prefix)
		if !ok {
			return fmt.Sprintf("the request path is not under --http-path-prefix %q", h.prefix)
		}
		path = rest
	}
	req.Method, req.Path, req.Host = r.Method, path, r.Host
	return ""
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
		if d.IDHeader != "" && d.ID != "" {
			hdr.Set(d.IDHeader, d.ID)
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
	if d.RetryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(d.RetryAfter))
	}
	w.WriteHeader(d.Status())
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
