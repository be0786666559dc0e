package main

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

	"go.yaml.in/yaml/v3"

	"github.com/portcullis/portcullis/policy"
)

// errRefused marks a change the keys file cannot take (exit status 1).
var errRefused = errors.New("refused")

// keyStore is a keys file being managed, with the policy that uses it when
// known (for its tiers, key_limit and key_lifetime).
type keyStore struct {
	path   string // the keys file
	policy string // the policy file; "" when working on a keys file alone
}

// openStore resolves --policy or --keys into the keys file to manage.
func openStore(policyPath, keysPath string) (*keyStore, error) {
	switch {
	case policyPath != "" && keysPath != "":
		return nil, errors.New("give --policy or --keys, not both")
	case keysPath != "":
		return &keyStore{path: keysPath}, nil
	case policyPath != "":
		snap, err := policy.Load(policyPath, policy.LoadOptions{})
		if err != nil {
			return nil, fmt.Errorf("%w: the policy does not validate now; fix it first:\n%v", errRefused, err)
		}
		if snap.KeysFile() == "" {
			return nil, fmt.Errorf("%w: %s keeps its keys inline; move them to a keys_file to manage them with portcullis keys", errRefused, policyPath)
		}
		return &keyStore{path: snap.KeysFile(), policy: policyPath}, nil
	}
	return nil, errors.New("give --policy FILE or --keys FILE")
}

// load returns the keys as the engine sees them: with the policy, effective
// expiries and tiers; without, as written.
func (s *keyStore) load() (*policy.Snapshot, []*policy.Key, error) {
	if s.policy != "" {
		snap, err := policy.Load(s.policy, policy.LoadOptions{})
		if err != nil {
			return nil, nil, err
		}
		return snap, snap.Keys(), nil
	}
	keys, err := policy.CheckKeysFile(s.path)
	return nil, keys, err
}

// update applies fn to the keys sequence of the file under an exclusive lock
// (so concurrent commands never lose a change), validates the result with
// the policy (or as a keys file), and replaces the file atomically: a
// running server sees either the old file or the new one, never a half.
func (s *keyStore) update(fn func(keys *yaml.Node) error) error {
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()

	data, err := os.ReadFile(s.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var doc yaml.Node
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("%w: %s: %v", errRefused, s.path, err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
		setField(doc.Content[0], "version", "1")
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: %s is not a keys file (want version: 1 and keys: [...])", errRefused, s.path)
	}
	keys := field(root, "keys")
	if keys == nil || keys.Kind != yaml.SequenceNode {
		keys = &yaml.Node{Kind: yaml.SequenceNode}
		setNode(root, "keys", keys)
	}
	if err := fn(keys); err != nil {
		return err
	}

	var out bytes.Buffer
	if strings.HasSuffix(s.path, ".json") {
		// A JSON keys file stays JSON (the server streams those).
		var v any
		if err := doc.Decode(&v); err != nil {
			return err
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		out.Write(append(b, '\n'))
	} else {
		enc := yaml.NewEncoder(&out)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return err
		}
		_ = enc.Close()
	}
	mode := os.FileMode(0o600)
	if fi, err := os.Stat(s.path); err == nil {
		mode = fi.Mode().Perm()
	}
	tmp := filepath.Join(filepath.Dir(s.path), "."+filepath.Base(s.path)+".tmp-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(tmp, out.Bytes(), mode); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if s.policy != "" {
		_, err = policy.Load(s.policy, policy.LoadOptions{KeysFile: tmp})
	} else {
		_, err = policy.CheckKeysFile(tmp)
	}
	if err != nil {
		return fmt.Errorf("%w: the keys file would not validate, so it was left as it was:\n%v", errRefused, err)
	}
	return os.Rename(tmp, s.path)
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

// setField sets key in mapping m to the scalar value (typed as YAML would
// read it: true, 1, …; strings quoted when needed).
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

// entryByID returns the index of the key entry with id, or -1.
func entryByID(keys *yaml.Node, id string) int {
	for i, e := range keys.Content {
		if f := field(e, "id"); f != nil && f.Value == id {
			return i
		}
	}
	return -1
}

// newEntry returns a mapping node for a key entry, in the style of the
// entries already in the file.
func newEntry(keys *yaml.Node) *yaml.Node {
	e := &yaml.Node{Kind: yaml.MappingNode}
	if len(keys.Content) > 0 {
		e.Style = keys.Content[0].Style & yaml.FlowStyle
	}
	return e
}
