package keys

// This file holds how a keys file is changed: under an exclusive lock, the
// change applied to its YAML tree (comments and layout kept), the result
// validated, written to a temporary file, synced and renamed over the old
// one, so a running server sees the old file or the new, never half.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/internal/source"
)

// ErrRefused marks a change the keys file cannot take: no such key, a
// limit, a result that would not validate. Nothing was written.
var ErrRefused = errors.New("refused")

// Editor changes one keys file. Validate, when set, is asked whether a
// candidate file (a temporary path beside the keys file) may replace it:
// the caller validates it with the policy that uses it.
type Editor struct {
	Path     string
	Validate func(candidate string) error
}

// List is the keys sequence of a keys file being edited: a YAML tree whose
// entries keep their comments and style.
type List struct{ seq *yaml.Node }

// Edit applies change to the file's keys under an exclusive lock (so
// concurrent commands never lose a change), validates the result and
// replaces the file atomically. A change returning an error writes nothing.
func (ed Editor) Edit(change func(*List) error) error {
	unlock, err := lockFile(ed.Path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	doc, err := ed.read()
	if err != nil {
		return err
	}
	root := doc.Content[0]
	seq := field(root, "keys")
	if seq == nil || seq.Kind != yaml.SequenceNode {
		seq = &yaml.Node{Kind: yaml.SequenceNode}
		setNode(root, "keys", seq)
	}
	if err := change(&List{seq: seq}); err != nil {
		return err
	}
	out, err := ed.encode(doc)
	if err != nil {
		return err
	}
	return ed.replace(out)
}

func (ed Editor) read() (*yaml.Node, error) {
	data, err := os.ReadFile(ed.Path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	doc := &yaml.Node{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, doc); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrRefused, ed.Path, err)
		}
	}
	if doc.Kind == 0 {
		doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
		setField(doc.Content[0], "version", "1")
	}
	if doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: %s is not a keys file (want version: 1 and keys: [...])", ErrRefused, ed.Path)
	}
	return doc, nil
}

// encode writes doc back: YAML, or JSON for a JSON keys file (the server
// streams those).
func (ed Editor) encode(doc *yaml.Node) ([]byte, error) {
	var out bytes.Buffer
	if strings.HasSuffix(ed.Path, ".json") {
		var v any
		if err := doc.Decode(&v); err != nil {
			return nil, err
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, err
		}
		out.Write(append(b, '\n'))
		return out.Bytes(), nil
	}
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// replace writes out to a temporary file beside the keys file (same mode),
// validates it, syncs it, renames it over the keys file and syncs the
// folder, so the change survives a crash.
func (ed Editor) replace(out []byte) error {
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(ed.Path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(ed.Path)
	tmp := filepath.Join(dir, "."+filepath.Base(ed.Path)+".tmp-"+strconv.Itoa(os.Getpid()))
	defer os.Remove(tmp)
	if err := writeSynced(tmp, out, mode); err != nil {
		return err
	}
	if ed.Validate != nil {
		if err := ed.Validate(tmp); err != nil {
			return fmt.Errorf("%w: the keys file would not validate, so it was left as it was:\n%v", ErrRefused, err)
		}
	} else if _, err := CheckFile(tmp); err != nil {
		return fmt.Errorf("%w: the keys file would not validate, so it was left as it was:\n%v", ErrRefused, err)
	}
	if err := os.Rename(tmp, ed.Path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func writeSynced(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// lockFile takes an exclusive advisory lock on path, waiting for it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking keys file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking keys file: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Add appends e (digest, binding, tier, times, names) in the style of the
// entries already there.
func (l *List) Add(e *Entry) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	if len(l.seq.Content) > 0 {
		n.Style = l.seq.Content[0].Style & yaml.FlowStyle
	}
	for _, f := range [][2]string{{"id", e.ID}, {"sha256", e.Digest.String()}, {"tenant", e.Tenant}, {"user", e.User},
		{"tier", e.Tier}, {"label", e.Label}, {"description", e.Description}} {
		if f[1] != "" {
			setString(n, f[0], f[1])
		}
	}
	setField(n, "created", e.Created.UTC().Format(time.RFC3339))
	if !e.Expires.IsZero() {
		setField(n, "expires", e.Expires.UTC().Format(time.RFC3339))
	}
	if e.Superuser {
		setField(n, "superuser", "true")
	}
	l.seq.Content = append(l.seq.Content, n)
}

// Rotate gives key id the digest d. The old value keeps working for overlap
// (none when 0); old values still unexpired at now are kept.
func (l *List) Rotate(id string, d Digest, overlap time.Duration, now time.Time) error {
	e := l.find(id)
	if e == nil {
		return fmt.Errorf("%w: no key %q", ErrRefused, id)
	}
	prev := &yaml.Node{Kind: yaml.SequenceNode, Style: e.Style & yaml.FlowStyle}
	if old := field(e, "previous"); old != nil {
		for _, p := range old.Content {
			if x := field(p, "expires"); x != nil {
				if t, err := source.ParseTimestamp(x.Value); err == nil && t.After(now) {
					prev.Content = append(prev.Content, p)
				}
			}
		}
	}
	if cur := field(e, "sha256"); cur != nil && overlap > 0 {
		p := &yaml.Node{Kind: yaml.MappingNode, Style: e.Style & yaml.FlowStyle}
		setString(p, "sha256", cur.Value)
		setField(p, "expires", now.Add(overlap).UTC().Format(time.RFC3339))
		prev.Content = append(prev.Content, p)
	}
	setString(e, "sha256", d.String())
	setField(e, "rotated", now.UTC().Format(time.RFC3339))
	if len(prev.Content) > 0 {
		setNode(e, "previous", prev)
	} else {
		deleteField(e, "previous")
	}
	return nil
}

// FinishRotation ends key id's overlap: only its current value works.
func (l *List) FinishRotation(id string) error {
	e := l.find(id)
	if e == nil {
		return fmt.Errorf("%w: no key %q", ErrRefused, id)
	}
	deleteField(e, "previous")
	return nil
}

// Match selects keys by id, user or tenant (exactly one set).
type Match struct{ ID, User, Tenant string }

func (m Match) matches(e *yaml.Node) bool {
	switch {
	case m.ID != "":
		return value(e, "id") == m.ID
	case m.User != "":
		return value(e, "user") == m.User
	}
	return value(e, "tenant") == m.Tenant
}

// Revoke disables (or, with remove, deletes) every key m selects and
// returns their ids; no match is refused.
func (l *List) Revoke(m Match, remove bool) ([]string, error) {
	var ids []string
	kept := l.seq.Content[:0:0]
	for _, e := range l.seq.Content {
		if !m.matches(e) {
			kept = append(kept, e)
			continue
		}
		ids = append(ids, value(e, "id"))
		if !remove {
			setField(e, "disabled", "true")
			deleteField(e, "previous")
			kept = append(kept, e)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: no key matches", ErrRefused)
	}
	l.seq.Content = kept
	return ids, nil
}

func (l *List) find(id string) *yaml.Node {
	for _, e := range l.seq.Content {
		if value(e, "id") == id {
			return e
		}
	}
	return nil
}

func value(m *yaml.Node, key string) string {
	if f := field(m, key); f != nil {
		return f.Value
	}
	return ""
}

// field returns the value node of key in mapping m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setNode sets key in mapping m to v, appending it when absent.
func setNode(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
}

// setField sets key to a scalar typed as YAML reads it (true, 1, a date).
func setField(m *yaml.Node, key, value string) {
	setNode(m, key, &yaml.Node{Kind: yaml.ScalarNode, Value: value})
}

// setString sets key to a string scalar, quoted if YAML would read it as
// something else.
func setString(m *yaml.Node, key, value string) {
	setNode(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
}

// deleteField removes key from mapping m.
func deleteField(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

// FormatEntry returns e as one flow-style keys-file entry ("- { id: …, sha256: … }"),
// for adding by hand.
func FormatEntry(e *Entry) string {
	l := &List{seq: &yaml.Node{Kind: yaml.SequenceNode}}
	l.Add(e)
	l.seq.Content[0].Style = yaml.FlowStyle
	b, _ := yaml.Marshal(l.seq)
	return strings.TrimSpace(string(b))
}

// Location is a keys file to work on and, when a policy uses it, the
// policy's default key lifetime and how to validate a candidate file with
// that policy (nil: as a keys file alone).
type Location struct {
	Path        string
	KeyLifetime time.Duration
	Validate    func(candidate string) error
}

// Editor returns an Editor of the file that validates each result.
func (l Location) Editor() Editor { return Editor{Path: l.Path, Validate: l.Validate} }

// entries returns the keys as written, refused (ErrRefused) when the file
// does not validate.
func (l Location) entries() ([]*Entry, error) {
	if l.Validate != nil {
		if err := l.Validate(l.Path); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRefused, err)
		}
	}
	es, err := CheckFile(l.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return es, nil
}
