package api

// This file holds strict request decoding and the field rules.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/portcullis/portcullis/internal/source"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// errBadRequest marks a request the API refuses as malformed (400).
var errBadRequest = errors.New("bad request")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// decode reads the body into v strictly (internal/source's JSON rules):
// at most 64 KiB, one JSON object, names exactly as written here and none
// repeated, no unknown field, no wrong type, nothing after it. An empty
// body is allowed only when empty is.
func decode(r *http.Request, v any, empty bool) error { return decodeUpTo(r, v, empty, maxBody) }

// decodeUpTo is decode with a bound of limit bytes.
func decodeUpTo(r *http.Request, v any, empty bool, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		return badf("the body is over %d KiB", limit>>10)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if empty {
			return nil
		}
		return badf("the body is empty: send a JSON object")
	}
	if trimmed[0] != '{' {
		return badf("the body is not a JSON object: send {…}")
	}
	if err := source.DecodeJSON(body, v); err != nil {
		return badf("%v", err)
	}
	return nil
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkID(id string) error {
	if !idRe.MatchString(id) {
		return badf("id: want 1 to 64 of A-Z, a-z, 0-9, _ and -")
	}
	return nil
}

// checkText holds a free-text field to 1..max printable characters (0..max
// when optional).
func checkText(field, v string, max int, optional bool) error {
	n := utf8.RuneCountInString(v)
	switch {
	case !utf8.ValidString(v):
		return badf("%s: not UTF-8", field)
	case n == 0 && !optional:
		return badf("%s: required", field)
	case n > max:
		return badf("%s: at most %d characters", field, max)
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return badf("%s: no control characters", field)
		}
	}
	return nil
}

// maxLifetime bounds every duration and expiry a caller gives: 100 years
// (36,500 days), so that every time stored is one an answer can write.
const maxLifetime = 100 * 365 * 24 * time.Hour

// parseLifetime reads "90d", "12h", "30m", "45s": a positive whole number
// and one unit, at most maxLifetime.
func parseLifetime(field, v string) (time.Duration, error) {
	units := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}
	if len(v) < 2 {
		return 0, badf(`%s: want a whole number and a unit s, m, h or d, like "90d"`, field)
	}
	unit, ok := units[v[len(v)-1]]
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if !ok || err != nil || n <= 0 {
		return 0, badf(`%s: want a whole number and a unit s, m, h or d, like "90d"`, field)
	}
	if n > int64(maxLifetime/unit) {
		return 0, badf(`%s: at most 100 years (36500d)`, field)
	}
	return time.Duration(n) * unit, nil
}

// expiry reads the two ways of giving an expiry (at most one), relative to
// now; nil when neither is given.
func expiry(at, in *string, now time.Time) (*time.Time, error) {
	switch {
	case at != nil && in != nil:
		return nil, badf("give expires_at or expires_in, not both")
	case at != nil:
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return nil, badf("expires_at: want an RFC 3339 time, like 2027-01-31T00:00:00Z")
		}
		if !t.After(now) {
			return nil, badf("expires_at: %s is not in the future", *at)
		}
		if t.After(now.Add(maxLifetime)) {
			return nil, badf("expires_at: at most 100 years ahead (36500d); for a key that never expires, leave it out")
		}
		t = t.UTC()
		return &t, nil
	case in != nil:
		d, err := parseLifetime("expires_in", *in)
		if err != nil {
			return nil, err
		}
		t := now.Add(d)
		return &t, nil
	}
	return nil, nil
}

// nullable is a JSON field that may be absent, null, or a value.
type nullable[T any] struct {
	Set   bool // present in the body
	Null  bool // present as null
	Value T
}

// UnmarshalJSONFrom records that the field was present, and whether null;
// a value is read under the same strict rules as the body.
func (n *nullable[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	n.Set = true
	if dec.PeekKind() == 'n' {
		n.Null = true
		_, err := dec.ReadToken()
		return err
	}
	return source.DecodeJSONValue(dec, &n.Value)
}
