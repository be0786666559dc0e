package keys

// This file holds how keys files are read: YAML decoded strictly, or a
// file named *.json streamed entry by entry, so a million keys load in
// seconds without the file or a decoded copy of it in memory.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/portcullis/portcullis/internal/source"
)

// FileEntry is one key as a keys file (or a policy's inline keys:) writes
// it, in YAML or JSON.
type FileEntry struct {
	ID          string `yaml:"id" json:"id"`
	SHA256      string `yaml:"sha256" json:"sha256"`
	Tenant      string `yaml:"tenant" json:"tenant"`
	User        string `yaml:"user" json:"user"`
	Tier        string `yaml:"tier" json:"tier"`
	Superuser   bool   `yaml:"superuser" json:"superuser"`
	Created     string `yaml:"created" json:"created"`
	Expires     string `yaml:"expires" json:"expires"`
	Disabled    bool   `yaml:"disabled" json:"disabled"`
	Label       string `yaml:"label" json:"label"`
	Description string `yaml:"description" json:"description"`
	Rotated     string `yaml:"rotated" json:"rotated"` // when the value last changed (informational)
	// Previous holds old values of a rotated key, each valid until its
	// expiry (portcullis keys rotate --overlap).
	Previous []FilePrevious `yaml:"previous" json:"previous"`
}

// FilePrevious is an old value of a rotated key, as written.
type FilePrevious struct {
	SHA256  string `yaml:"sha256" json:"sha256"`
	Expires string `yaml:"expires" json:"expires"`
}

// keysFile is a keys file: {version: 1, keys: [...]}.
type keysFile struct {
	Version int         `yaml:"version"`
	Keys    []FileEntry `yaml:"keys"`
}

// At says where an entry was written, for reporting its problems.
type At struct {
	File  *source.File
	Index int // in the file's keys list
}

// Path returns the field path of field (".tier", "") of the entry.
func (a At) Path(field string) string { return "keys[" + strconv.Itoa(a.Index) + "]" + field }

// Problem records a problem with field of the entry at a.
func (a At) Problem(p *source.Problems, field, format string, args ...any) {
	p.Addf(a.File, a.Path(field), format, args...)
}

// Entry converts fe into an Entry, reporting to p every field that is
// wrong in itself (a missing id, a digest that is not 64 hex digits, a
// time that does not parse, an expiry before the creation). What depends
// on a policy (the tier, the tenant) is the caller's to check. The entry
// is returned even when a field is wrong, with that field zero, so that
// the caller can report the rest of its problems too.
func (fe *FileEntry) Entry(p *source.Problems, at At) *Entry {
	e := &Entry{ID: fe.ID, Tenant: fe.Tenant, User: fe.User, Tier: fe.Tier, Superuser: fe.Superuser,
		Disabled: fe.Disabled, Label: fe.Label, Description: fe.Description}
	bad := func(field, format string, args ...any) { at.Problem(p, field, format, args...) }
	if fe.ID == "" {
		bad(".id", "required")
	}
	if fe.Tier == "" {
		bad(".tier", "required")
	}
	if d, err := ParseDigest(fe.SHA256); err != nil {
		bad(".sha256", "%v", err)
	} else {
		e.Digest = d
	}
	e.Created = timestamp(bad, ".created", fe.Created)
	e.Expires = timestamp(bad, ".expires", fe.Expires)
	e.Rotated = timestamp(bad, ".rotated", fe.Rotated)
	if fe.Created == "" {
		bad(".created", "required (e.g. 2026-01-31)")
	}
	if !e.Expires.IsZero() && e.Expires.Before(e.Created) {
		bad(".expires", "before created")
	}
	for j, pv := range fe.Previous {
		field := fmt.Sprintf(".previous[%d]", j)
		d, err := ParseDigest(pv.SHA256)
		if err != nil {
			bad(field+".sha256", "%v", err)
			continue
		}
		if pv.Expires == "" {
			bad(field+".expires", "required: until when the old value keeps working")
			continue
		}
		e.Previous = append(e.Previous, Previous{Digest: d, Expires: timestamp(bad, field+".expires", pv.Expires)})
	}
	return e
}

func timestamp(bad func(field, format string, args ...any), field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := source.ParseTimestamp(v)
	if err != nil {
		bad(field, "%v", err)
	}
	return t
}

// ReadOptions tune ReadFile.
type ReadOptions struct {
	// Digest, when set, is written every byte of the file (for a version
	// of everything a policy was built from).
	Digest io.Writer
}

// ReadFile reads the keys file at path, strictly (unknown fields are
// problems), calling add with every entry in file order, and reports every
// problem to p, located by file, line and field. It returns false when the
// file could not be read at all.
func ReadFile(path string, p *source.Problems, opts ReadOptions, add func(*Entry, At)) bool {
	if strings.HasSuffix(path, ".json") {
		if err := streamJSON(path, p, opts, add); err != nil {
			p.Add(err)
			return false
		}
		return true
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.Add(fmt.Errorf("%s: cannot read keys file: %w", path, err))
		return false
	}
	if opts.Digest != nil {
		fmt.Fprintf(opts.Digest, "\x00%s\x00%d\x00", path, len(data))
		_, _ = opts.Digest.Write(data)
	}
	var kf keysFile
	f, err := source.Decode(path, data, &kf)
	p.Add(err)
	if f == nil {
		return false
	}
	if kf.Version != 0 && kf.Version != 1 {
		p.Addf(f, "version", "unsupported keys file version %d (want 1)", kf.Version)
	}
	for i := range kf.Keys {
		at := At{File: f, Index: i}
		add(kf.Keys[i].Entry(p, at), at)
	}
	return true
}

var keyIndexRe = regexp.MustCompile(`^keys\[(\d+)\]`)

// jsonStream is a JSON keys file {"version": 1, "keys": [...]} being
// decoded one entry at a time, under the project's strict JSON rules
// (internal/source): names exactly as written, none repeated, none
// unknown.
type jsonStream struct {
	path    string
	dec     *jsontext.Decoder
	offsets []int64 // where each entry starts, for problem lines
	file    *source.File
}

// streamJSON decodes the JSON keys file at path, calling add with each
// entry. Problems get their line from the entry's offset.
func streamJSON(path string, p *source.Problems, opts ReadOptions, add func(*Entry, At)) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: cannot read keys file: %w", path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var r io.Reader = fh
	if opts.Digest != nil {
		fmt.Fprintf(opts.Digest, "\x00%s\x00%d\x00", path, fi.Size())
		r = io.TeeReader(fh, opts.Digest)
	}
	js := &jsonStream{path: path, dec: source.NewJSONDecoder(bufio.NewReaderSize(r, 1<<16))}
	js.file = source.Streamed(path, js.line)
	if err := js.delim('{'); err != nil {
		return err
	}
	for js.dec.PeekKind() != '}' {
		t, err := js.dec.ReadToken()
		if err != nil {
			return js.fail(js.dec.InputOffset(), "%v", source.JSONError(err))
		}
		switch name := t.String(); name {
		case "version":
			var v int
			if err := source.DecodeJSONValue(js.dec, &v); err != nil || v != 1 {
				return js.fail(js.dec.InputOffset(), "version: want 1")
			}
		case "keys":
			if err := js.entries(p, add); err != nil {
				return err
			}
		default:
			return js.fail(js.dec.InputOffset(), "unknown field %q (misspelled, or not valid here; names are case-sensitive)", name)
		}
	}
	if err := js.delim('}'); err != nil {
		return err
	}
	if _, err := js.dec.ReadToken(); err != io.EOF {
		return js.fail(js.dec.InputOffset(), "data after the JSON object")
	}
	return nil
}

// entries decodes the keys array. Decoding is half the work of a load:
// one goroutine decodes the entries (decodeAll) while this one checks and
// adds them in file order, so that on two cores a million keys load in
// about half the time. Only this goroutine reports problems and touches
// offsets; the decoder owns js.dec until it closes the channel.
func (js *jsonStream) entries(p *source.Problems, add func(*Entry, At)) error {
	if err := js.delim('['); err != nil {
		return err
	}
	batches, stop := make(chan *decoded, 4), make(chan struct{})
	defer close(stop) // the decoder stops if add panics
	go js.decodeAll(batches, stop)
	i := 0
	for b := range batches {
		for k := range b.entries {
			js.offsets = append(js.offsets, b.offsets[k])
			at := At{File: js.file, Index: i}
			add(b.entries[k].Entry(p, at), at)
			i++
		}
		if b.err != nil {
			js.offsets = append(js.offsets, b.errAt)
			return js.fail(b.errAt, "%v", b.err) // the path names the entry: keys[i].field
		}
	}
	return js.delim(']')
}

// decoded is a batch of entries decodeAll decoded, with where each starts,
// and the error that ended the array, if any (at errAt).
type decoded struct {
	entries []FileEntry
	offsets []int64
	err     error
	errAt   int64
}

// decodeBatch is how many entries decodeAll hands over at once.
const decodeBatch = 256

// decodeAll decodes the entries of the keys array up to its end or the
// first error, sending them in batches, then closes out.
func (js *jsonStream) decodeAll(out chan<- *decoded, stop <-chan struct{}) {
	defer close(out)
	b := &decoded{entries: make([]FileEntry, 0, decodeBatch)}
	send := func() bool {
		select {
		case out <- b:
			b = &decoded{entries: make([]FileEntry, 0, decodeBatch)}
			return true
		case <-stop:
			return false
		}
	}
	for js.dec.PeekKind() != ']' {
		off := js.dec.InputOffset()
		b.entries = append(b.entries, FileEntry{})
		if err := source.DecodeJSONValue(js.dec, &b.entries[len(b.entries)-1]); err != nil {
			b.entries, b.err, b.errAt = b.entries[:len(b.entries)-1], err, off
			send()
			return
		}
		b.offsets = append(b.offsets, off)
		if len(b.entries) == decodeBatch && !send() {
			return
		}
	}
	if len(b.entries) > 0 {
		send()
	}
}

// line returns the line of the field path "keys[i]…", for problems.
func (js *jsonStream) line(field string) int {
	m := keyIndexRe.FindStringSubmatch(field)
	if m == nil {
		return 0
	}
	i, _ := strconv.Atoi(m[1])
	if i >= len(js.offsets) {
		return 0
	}
	return source.LineAt(js.path, js.offsets[i])
}

func (js *jsonStream) fail(off int64, format string, args ...any) error {
	loc := js.path
	if l := source.LineAt(js.path, off); l > 0 {
		loc += ":" + strconv.Itoa(l)
	}
	return fmt.Errorf("%s: %s", loc, fmt.Sprintf(format, args...))
}

func (js *jsonStream) delim(want jsontext.Kind) error {
	if got := js.dec.PeekKind(); got != want {
		if got == 0 {
			_, err := js.dec.ReadToken()
			return js.fail(js.dec.InputOffset(), "%v", source.JSONError(err))
		}
		return js.fail(js.dec.InputOffset(), "want %q, found %v", want, got)
	}
	_, err := js.dec.ReadToken()
	if err != nil {
		return js.fail(js.dec.InputOffset(), "%v", source.JSONError(err))
	}
	return nil
}

// SizeHint guesses how many entries the keys file at path holds, to size
// an index once instead of growing it a million times (an entry is about
// 128 bytes). It is 0 when the file cannot be read.
func SizeHint(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return int(fi.Size() / 128)
}

// CheckFile validates a keys file on its own, without a policy: strict
// decoding, ids (present, unique), digests (well-formed, unique), times.
// Tier names are checked only against a policy. It returns the entries.
func CheckFile(path string) ([]*Entry, error) {
	var p source.Problems
	var out []*Entry
	var where []At
	b := NewIndexBuilder(SizeHint(path))
	ReadFile(path, &p, ReadOptions{}, func(e *Entry, at At) {
		if taken, field := b.Add(e, e.Tenant, 0); taken != "" {
			at.Problem(&p, field, "same key as %q", taken)
		}
		out = append(out, e)
		where = append(where, at)
	})
	DuplicateIDs(len(out), func(i int) string { return out[i].ID }, func(i int) {
		where[i].Problem(&p, ".id", "duplicate key id %q", out[i].ID)
	})
	if err := p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// DuplicateIDs calls dup with the index of every key whose id an earlier
// key already has, for n keys whose ids id gives. It sorts indexes instead
// of holding a map of a million ids.
func DuplicateIDs(n int, id func(int) string, dup func(int)) {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(id(int(a)), id(int(b))) })
	for i := 1; i < len(order); i++ {
		a, b := int(order[i-1]), int(order[i])
		if id(b) != "" && id(a) == id(b) {
			dup(b)
		}
	}
}

// IDs is an append-only list of key ids held in one arena: a million ids
// cost two allocations, not a million strings for the collector to mark.
// It is not safe for concurrent use.
type IDs struct {
	text []byte   // never modified in place: At's strings point into it
	end  []uint32 // where each id ends in text
}

// Add appends id.
func (l *IDs) Add(id string) {
	l.text = append(l.text, id...)
	l.end = append(l.end, uint32(len(l.text)))
}

// Len returns the number of ids.
func (l *IDs) Len() int { return len(l.end) }

// At returns id i, a string over the arena (valid for as long as it is
// kept: a later Add may move the arena, never change it).
func (l *IDs) At(i int) string {
	start := uint32(0)
	if i > 0 {
		start = l.end[i-1]
	}
	if start == l.end[i] {
		return ""
	}
	return unsafe.String(&l.text[start], int(l.end[i]-start))
}

// Duplicates calls dup with the index of every id an earlier one repeats.
func (l *IDs) Duplicates(dup func(i int)) { DuplicateIDs(l.Len(), l.At, dup) }
