package source

// This file holds decoding, line look-ups, problems and the value parsers
// every configuration file shares.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is one file being loaded: its name as the user gave it and, to turn
// a field path into a line number, its parsed tree or, for a streamed
// file, a function that finds the line. It is read-only once made.
type File struct {
	name  string
	root  *yaml.Node
	lines func(path string) int
}

// Streamed returns a File whose lines are found by lines (a file decoded
// entry by entry, never held whole).
func Streamed(name string, lines func(path string) int) *File {
	return &File{name: name, lines: lines}
}

// Name returns the file's name as the user gave it.
func (f *File) Name() string { return f.name }

// Line returns the line of the node at path ("routes[3].tier",
// "issuers.customers.jwks"), or of its deepest existing ancestor; 0 when
// unknown.
func (f *File) Line(path string) int {
	if f == nil {
		return 0
	}
	if f.lines != nil {
		return f.lines(path)
	}
	if f.root == nil {
		return 0
	}
	n := document(f.root)
	line := n.Line
	for _, seg := range splitPath(path) {
		next, keyLine := child(n, seg)
		if next == nil {
			return line
		}
		n = next
		line = next.Line
		if keyLine > 0 {
			line = keyLine
		}
	}
	return line
}

// Keys returns the keys of the mapping at field of the document's root, in
// file order (a decoded Go map loses it).
func (f *File) Keys(field string) []string {
	if f == nil || f.root == nil {
		return nil
	}
	m, _ := child(document(f.root), field)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, m.Content[i].Value)
	}
	return out
}

func document(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

var indexRe = regexp.MustCompile(`\[(\d+)\]`)

// splitPath turns "a.b[2].c" into ["a", "b", "2", "c"]; a segment that is a
// number indexes a sequence.
func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	return strings.Split(indexRe.ReplaceAllString(path, ".$1"), ".")
}

// child returns the node under n named seg and, for a mapping, the line of
// its key.
func child(n *yaml.Node, seg string) (*yaml.Node, int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == seg {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case yaml.SequenceNode:
		if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i], 0
		}
	}
	return nil, 0
}

// Problems collects every problem of a load, so that the user sees them all
// at once. The zero value is ready to use; it is not safe for concurrent
// use.
type Problems struct{ errs []error }

// Addf records a problem with the field at path of f.
func (p *Problems) Addf(f *File, path string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	loc := ""
	if f != nil {
		loc = f.name
		if line := f.Line(path); line > 0 {
			loc += ":" + strconv.Itoa(line)
		}
	}
	if path != "" {
		msg = path + ": " + msg
	}
	if loc != "" {
		msg = loc + ": " + msg
	}
	p.errs = append(p.errs, errors.New(msg))
}

// Add records err, already located, as a problem; nil is ignored.
func (p *Problems) Add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Err returns every problem recorded, one per line, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// Len returns how many problems were recorded.
func (p *Problems) Len() int { return len(p.errs) }

var unknownFieldRe = regexp.MustCompile(`^line (\d+): field (\S+) not found in type .+$`)
var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// Decode parses data (YAML, or JSON, which is YAML) into v, refusing unknown
// fields, and returns the File for line look-ups. Its errors read
// "file:line: …". When only some fields failed to decode it returns both
// the File (the rest of v is decoded, so validation can go on) and the
// error; a nil File means nothing could be read.
func Decode(name string, data []byte, v any) (*File, error) {
	f := &File{name: name, root: &yaml.Node{}}
	if err := yaml.Unmarshal(data, f.root); err != nil {
		return nil, yamlErr(name, err.Error())
	}
	if len(f.root.Content) == 0 {
		return nil, fmt.Errorf("%s: the file is empty", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil {
		// A second document ("---") would be read by nothing: refuse it
		// rather than serve half of what the file says.
		var next yaml.Node
		if dec.Decode(&next) != io.EOF {
			return nil, fmt.Errorf("%s:%d: the file holds more than one YAML document (a line \"---\"): keep one", name, next.Line)
		}
		return f, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil, yamlErr(name, err.Error())
	}
	var p Problems
	for _, e := range te.Errors {
		if m := unknownFieldRe.FindStringSubmatch(e); m != nil {
			p.Add(fmt.Errorf("%s:%s: unknown field %q (misspelled, or not valid here)", name, m[1], m[2]))
			continue
		}
		p.Add(yamlErr(name, e))
	}
	return f, p.Err()
}

// yamlErr turns the YAML library's "yaml: line 3: x" into "file:3: x".
func yamlErr(name, msg string) error {
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}

// JSONMessage returns encoding/json's error text without its "json: "
// prefix, saying plainly when the document is not JSON at all.
func JSONMessage(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON: " + se.Error()
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// LineAt returns the line of the first non-space byte at or after offset
// off in the file at path (read again, only when a problem is reported).
func LineAt(path string, off int64) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	r := bufio.NewReader(f)
	line := 1
	for i := int64(0); ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return line
		}
		if i >= off && !bytes.ContainsRune([]byte(" \t\r\n,"), rune(b)) {
			return line
		}
		if b == '\n' {
			line++
		}
	}
}

// ParseDuration parses a configuration duration: Go syntax ("90s", "15m",
// "1h30m") plus a day unit ("270d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("invalid duration %q: want a whole number of days like \"270d\"", s)
		}
		if n > int(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("invalid duration %q: at most 106751d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q: want e.g. \"90s\", \"15m\", \"12h\" or \"270d\"", s)
	}
	return d, nil
}

// ParseTimestamp parses a point in time written as RFC 3339
// ("2026-01-02T15:04:05Z") or as a date ("2026-01-02", midnight UTC).
// Years outside 1 to 9999 in UTC are refused: no JSON or RFC 3339 answer
// could write them.
func ParseTimestamp(s string) (time.Time, error) {
	var t time.Time
	var err error
	if len(s) == len(time.DateOnly) {
		t, err = time.Parse(time.DateOnly, s)
	} else {
		t, err = time.Parse(time.RFC3339, s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", s)
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("time %q is outside the years 1 to 9999 (in UTC)", s)
	}
	return t, nil
}

// StringList is one string or a list of strings.
type StringList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(StringList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a string", c.Line)
			}
			out = append(out, c.Value)
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list of strings", n.Line)
}
