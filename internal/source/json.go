package source

// This file holds the one strict JSON reading every JSON body and file of
// the project goes through: field names match exactly (a differently cased
// name is unknown), a name repeated in one object is an error, unknown
// names are errors, and nothing may follow the value. encoding/json (v1)
// matches names case-insensitively and lets the last of two equal names
// win, so a body {"user":"a","USER":"b"} reads as b there: a reader that
// checked body["user"] first would be bypassed. The decoder is the v2
// prototype from the Go team (github.com/go-json-experiment/json), whose
// defaults are exactly these rules.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// JSONOptions are the options of every strict JSON read: exact names, no
// repeated name, no unknown name, valid UTF-8.
var JSONOptions = json.JoinOptions(
	json.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
	json.RejectUnknownMembers(true),
)

// DecodeJSON reads data, exactly one JSON value and nothing after it but
// white space, into v under JSONOptions. Its error names the field the
// problem is in ("user: want a string", "USER is not a field") and never
// quotes a value, since a value may be a secret.
func DecodeJSON(data []byte, v any) error {
	dec := jsontext.NewDecoder(bytes.NewReader(data), JSONOptions)
	if err := json.UnmarshalDecode(dec, v, JSONOptions); err != nil {
		return JSONError(err)
	}
	if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the value")
	}
	return nil
}

// NewJSONDecoder returns a streaming decoder of r under JSONOptions, for
// files too large to hold twice (a keys file of a million entries).
func NewJSONDecoder(r io.Reader) *jsontext.Decoder { return jsontext.NewDecoder(r, JSONOptions) }

// DecodeJSONValue reads the next value of dec into v under JSONOptions.
func DecodeJSONValue(dec *jsontext.Decoder, v any) error {
	if err := json.UnmarshalDecode(dec, v, JSONOptions); err != nil {
		return JSONError(err)
	}
	return nil
}

// JSONError rewrites an error of the strict decoder as "field: what is
// wrong", naming fields by their path (keys[3].user) as YAML problems are
// named, and never quoting a value the caller sent.
func JSONError(err error) error {
	var se *json.SemanticError
	var sy *jsontext.SyntacticError
	switch {
	case errors.As(err, &sy):
		parent, name := splitPointer(sy.JSONPointer)
		switch {
		case errors.Is(sy.Err, jsontext.ErrDuplicateName):
			return located(parent, fmt.Sprintf("field %q appears twice: each field may appear once", name))
		case errors.Is(sy.Err, io.ErrUnexpectedEOF):
			return errors.New("invalid JSON: it ends too early")
		}
		return located(jsonField(sy.JSONPointer), fmt.Sprintf("invalid JSON at byte %d", sy.ByteOffset))
	case errors.As(err, &se):
		field := jsonField(se.JSONPointer)
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			parent, name := splitPointer(se.JSONPointer)
			return located(parent, fmt.Sprintf("unknown field %q (misspelled, or not valid here; names are case-sensitive)", name))
		case se.GoType != nil && se.JSONKind != 0:
			return located(field, fmt.Sprintf("want %s, not %s", goKind(se.GoType.String()), jsonKind(se.JSONKind)))
		case se.Err != nil:
			return located(field, strings.TrimPrefix(se.Err.Error(), "json: "))
		}
		return located(field, "not a valid value")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: it ends too early")
	}
	return err
}

// located prefixes msg with the field path, unless the path is the whole
// value.
func located(field, msg string) error {
	if field == "" {
		return errors.New(msg)
	}
	return errors.New(field + ": " + msg)
}

// splitPointer returns the path of a member's object and the member's
// name (printable, bounded).
func splitPointer(p jsontext.Pointer) (string, string) {
	parent, name := p.Parent(), p.LastToken()
	return jsonField(parent), printable(name)
}

// jsonField writes a JSON pointer (/keys/3/user) as a field path
// (keys[3].user); "" for the whole value.
func jsonField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if isIndex(tok) {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(printable(tok))
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// printable bounds a field name the caller wrote before it reaches a
// message: at most 64 bytes, control characters and quotes escaped.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Trim(strconv.Quote(s), `"`)
}

func goKind(t string) string {
	switch {
	case t == "string" || strings.HasSuffix(t, "*string"):
		return "a string"
	case t == "bool" || strings.HasSuffix(t, "*bool"):
		return "true or false"
	case strings.Contains(t, "int") || strings.Contains(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]") || strings.HasPrefix(t, "*[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "an object"
	case strings.Contains(t, "time.Time"):
		return "an RFC 3339 time"
	}
	return "an object"
}

func jsonKind(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "true or false"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "a list"
	}
	return "another kind of value"
}
