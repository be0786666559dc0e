package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"

	"github.com/portcullis/portcullis/cache"
)

// A keys file named *.json is streamed: each entry is decoded and compiled
// before the next is read, so a million keys load in seconds without the
// file or a decoded copy of it in memory. The format is the YAML one written
// as JSON: {"version": 1, "keys": [{"id": …, "sha256": …}, …]}.

var keyIndexRe = regexp.MustCompile(`^keys\[(\d+)\]`)

// streamJSONKeys decodes the keys of the JSON keys file at path strictly
// (unknown fields are errors) and passes each to add. Problems found by add
// get their line from the entry's offset in the file.
func (c *compiler) streamJSONKeys(path string, add func(keyEntry)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fmt.Fprintf(c.digest, "\x00%s\x00%d\x00", path, fi.Size())
	// An entry is about 120 bytes: size the indexes once instead of
	// growing them a million times.
	if n := int(fi.Size() / 128); n > len(c.s.keyList) {
		c.s.keyList = slices.Grow(c.s.keyList, n)
		if len(c.s.keys) == 0 {
			c.s.keys = make(map[cache.Digest]*Key, n)
		}
	}
	dec := json.NewDecoder(bufio.NewReaderSize(io.TeeReader(f, c.digest), 1<<16))
	dec.DisallowUnknownFields()

	var offsets []int64 // where each entry starts, for error lines
	src := &source{name: path, lines: func(p string) int {
		m := keyIndexRe.FindStringSubmatch(p)
		if m == nil {
			return 0
		}
		i, _ := strconv.Atoi(m[1])
		if i >= len(offsets) {
			return 0
		}
		return lineAt(path, offsets[i])
	}}
	c.keysSrc = src
	fail := func(off int64, format string, args ...any) error {
		loc := path
		if l := lineAt(path, off); l > 0 {
			loc += ":" + strconv.Itoa(l)
		}
		return fmt.Errorf("%s: %s", loc, fmt.Sprintf(format, args...))
	}
	delim := func(want json.Delim) error {
		t, err := dec.Token()
		if err != nil {
			return fail(dec.InputOffset(), "%v", jsonMessage(err))
		}
		if d, ok := t.(json.Delim); !ok || d != want {
			return fail(dec.InputOffset(), "want %q, found %v", want, t)
		}
		return nil
	}
	if err := delim('{'); err != nil {
		return err
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fail(dec.InputOffset(), "%v", jsonMessage(err))
		}
		switch t {
		case "version":
			var v int
			if err := dec.Decode(&v); err != nil || v != 1 {
				return fail(dec.InputOffset(), "version: want 1")
			}
		case "keys":
			if err := delim('['); err != nil {
				return err
			}
			for i := 0; dec.More(); i++ {
				offsets = append(offsets, dec.InputOffset())
				var k keyFile
				if err := dec.Decode(&k); err != nil {
					return fail(offsets[i], "keys[%d]: %v", i, jsonMessage(err))
				}
				add(keyEntry{&k, src, i})
			}
			if err := delim(']'); err != nil {
				return err
			}
		default:
			return fail(dec.InputOffset(), "unknown field %q (misspelled, or not valid here)", t)
		}
	}
	return delim('}')
}

// jsonMessage drops the "json: " prefix of encoding/json's errors.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON: " + se.Error()
	}
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "json: " {
		msg = msg[6:]
	}
	return msg
}

// lineAt returns the line of the first non-space byte at or after off in
// the file at path (read again, only when a problem is reported).
func lineAt(path string, off int64) int {
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
