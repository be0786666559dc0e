package authn

// This file holds how a token's header and claims are read: one pass over
// the JSON with go-json-experiment's jsontext, keeping only the members
// Portcullis reads, with no reflection and no map of every claim.

import (
	"bytes"
	"io"
	"strconv"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// claim is one member of a token's header or claims as the JSON wrote it:
// kind is 0 when the member is absent, else its JSON kind ('"', '0', '[',
// '{', 'n', 't', 'f').
type claim struct {
	kind  jsontext.Kind
	str   string   // a string's value
	num   float64  // a number's value, when numOK: it fits a float64
	numOK bool     //
	list  []string // an array's string elements, in order (others skipped); never nil for an array
}

// absent is what a member not written reads as.
var absent claim

// object is the members of one JSON object that a reader asked for, by
// the slot names gives them.
type object struct {
	names map[string]int
	vals  []claim
}

// get returns member name ("exp"), absent when it was not written or not
// asked for.
func (o *object) get(name string) *claim {
	if i, ok := o.names[name]; ok {
		return &o.vals[i]
	}
	return &absent
}

// objectReader is a recycled JSON decoder over a byte slice.
type objectReader struct {
	r    bytes.Reader
	dec  *jsontext.Decoder
	name []byte // an escaped member name, unquoted
}

var objectReaders = sync.Pool{New: func() any {
	or := &objectReader{}
	or.dec = jsontext.NewDecoder(&or.r)
	return or
}}

// readObject reads the JSON object b into o: the members o.names lists,
// each in its slot; the others are checked for well-formedness and
// skipped. It fails on anything but exactly one object: invalid JSON,
// invalid UTF-8, a name written twice (RFC 7519 §4 lets a parser refuse
// duplicate claim names; jsontext's default refuses them however they are
// escaped), or data after it. Member names match exactly, case included.
func readObject(b []byte, o *object) bool {
	or := objectReaders.Get().(*objectReader)
	defer func() {
		or.r.Reset(nil)
		or.dec.Reset(&or.r)
		objectReaders.Put(or)
	}()
	or.r.Reset(b)
	or.dec.Reset(&or.r)
	dec := or.dec
	if t, err := dec.ReadToken(); err != nil || t.Kind() != '{' {
		return false
	}
	for dec.PeekKind() == '"' {
		raw, err := dec.ReadValue()
		if err != nil {
			return false
		}
		name := raw[1 : len(raw)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			if or.name, err = jsontext.AppendUnquote(or.name[:0], raw); err != nil {
				return false
			}
			name = or.name
		}
		i, wanted := o.names[string(name)]
		if !wanted {
			if dec.SkipValue() != nil {
				return false
			}
			continue
		}
		if !readMember(dec, &o.vals[i]) {
			return false
		}
	}
	if t, err := dec.ReadToken(); err != nil || t.Kind() != '}' {
		return false
	}
	_, err := dec.ReadToken()
	return err == io.EOF
}

// readMember reads the next value of dec into c.
func readMember(dec *jsontext.Decoder, c *claim) bool {
	c.kind = dec.PeekKind()
	switch c.kind {
	case '"':
		t, err := dec.ReadToken()
		if err != nil {
			return false
		}
		c.str = t.String()
	case '0':
		raw, err := dec.ReadValue()
		if err != nil {
			return false
		}
		c.num, c.numOK = parseNumber(raw)
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return false
		}
		c.list = []string{}
		for {
			switch dec.PeekKind() {
			case ']':
				_, err := dec.ReadToken()
				return err == nil
			case '"':
				t, err := dec.ReadToken()
				if err != nil {
					return false
				}
				c.list = append(c.list, t.String())
			case 0: // an error: the read says which
				return false
			default:
				if dec.SkipValue() != nil {
					return false
				}
			}
		}
	case '{', 'n', 't', 'f':
		return dec.SkipValue() == nil
	default:
		return false
	}
	return true
}

// parseNumber reads a JSON number as a float64, ok when it fits one. The
// times a token carries are integers, read as such: strconv.ParseFloat's
// frame (its slow path's decimal buffer) is large enough to grow the
// checking goroutine's stack at that depth; ParseFloat reads the rest.
func parseNumber(raw []byte) (float64, bool) {
	if len(raw) <= 18 && !bytes.ContainsAny(raw, ".eE") {
		if i, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return float64(i), true
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}
