package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// source is one file being loaded: its name as the user gave it and its
// parsed YAML tree, used to turn a field path into a line number.
type source struct {
	name  string
	root  *yaml.Node
	lines func(path string) int // instead of root, for streamed files
}

// problems collects every validation problem of a load, so that the user
// sees them all at once, each as "file:line: field.path: what is wrong".
type problems struct{ errs []error }

func (p *problems) addf(src *source, path string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	line := src.line(path)
	loc := src.name
	if line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	if path != "" {
		msg = path + ": " + msg
	}
	p.errs = append(p.errs, errors.New(loc+": "+msg))
}

func (p *problems) err() error { return errors.Join(p.errs...) }

// line returns the line of the node at path ("routes[3].tier",
// "issuers.customers.jwks"), or of its deepest existing ancestor; 0 when
// there is no tree.
func (s *source) line(path string) int {
	if s != nil && s.lines != nil {
		return s.lines(path)
	}
	if s == nil || s.root == nil {
		return 0
	}
	n := s.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
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

var indexRe = regexp.MustCompile(`\[(\d+)\]`)

// splitPath turns "a.b[2].c" into ["a", "b", "2", "c"]; a segment that is a
// number indexes a sequence.
func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	path = indexRe.ReplaceAllString(path, ".$1")
	return strings.Split(path, ".")
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

var unknownFieldRe = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// decodeStrict parses data (YAML or JSON) into v, rejecting unknown fields,
// and returns the tree for line lookups. Its errors read "file:line: …".
// When only some fields failed to decode it returns both the tree (the rest
// of v is decoded, so validation can go on) and the error.
func decodeStrict(name string, data []byte, v any) (*source, error) {
	src := &source{name: name, root: &yaml.Node{}}
	if err := yaml.Unmarshal(data, src.root); err != nil {
		return nil, yamlErr(name, err.Error())
	}
	if len(src.root.Content) == 0 {
		return nil, fmt.Errorf("%s: the file is empty", name)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil {
		return src, nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return nil, yamlErr(name, err.Error())
	}
	var p problems
	for _, e := range te.Errors {
		if m := unknownFieldRe.FindStringSubmatch(e); m != nil {
			p.errs = append(p.errs, fmt.Errorf("%s:%s: unknown field %q (misspelled, or not valid here)", name, m[1], m[2]))
			continue
		}
		p.errs = append(p.errs, yamlErr(name, e))
	}
	return src, p.err()
}

// yamlErr turns the YAML library's "yaml: line 3: x" into "file:3: x".
func yamlErr(name, msg string) error {
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}
