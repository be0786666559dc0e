package main

// This file holds the start of a replica with a million keys from a file,
// as an operator waits for it: from exec to the first /readyz 200, and
// where that time goes (read, digest, decode, validate, index, the first
// collection), measured in this process with the same code the server
// runs.

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/gcfloor"
	"github.com/portcullis/portcullis/internal/source"
	"github.com/portcullis/portcullis/keys"
	"github.com/portcullis/portcullis/policy"
)

// readyPoll is how often a starting server's /readyz is asked: the
// resolution of exec → ready.
const readyPoll = 2 * time.Millisecond

// waitReady polls s's /readyz until it answers 200 (at most 60 s) and
// returns the time from s's exec.
func waitReady(s *server) (time.Duration, error) {
	c := &http.Client{Timeout: time.Second}
	for time.Since(s.started) < time.Minute {
		resp, err := c.Get("http://" + s.admin + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(s.started), nil
			}
		}
		time.Sleep(readyPoll)
	}
	return 0, fmt.Errorf("%s: not ready 60 s after exec", s.admin)
}

// startup is what -starts starts of one policy measured.
type startup struct {
	listening, ready, cpu []time.Duration // cpu: the process's CPU time at ready
	rssKB                 []int64
}

// startN starts portcullis on policy n times, one after another, and
// times each from exec to listening and to the first /readyz 200.
func (b *bench) startN(policy string, n int) (startup, error) {
	var st startup
	for range n {
		s, err := b.start(policy)
		if err != nil {
			return st, err
		}
		r, err := waitReady(s)
		if err != nil {
			s.stop()
			return st, err
		}
		st.listening, st.ready, st.cpu = append(st.listening, s.ready), append(st.ready, r), append(st.cpu, s.cpu())
		st.rssKB = append(st.rssKB, s.memKB("VmRSS"))
		s.stop()
	}
	return st, nil
}

// processCPU returns the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}

func medianDur(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// phases is one in-process load of the big keys file, phase by phase.
type phases struct {
	read, digest, decode, validate, compile, collect time.Duration
}

// loadPhases times, in this process, the steps of loading the big policy
// that the server runs before it listens: reading the keys file, hashing
// it (the policy's version), decoding its entries (strict JSON), checking
// each entry, the whole policy.Load (which adds the index and the
// policy's checks of every key), and the collection that returns the
// load's garbage to the OS. Each pass reads the whole file again; a phase
// is the difference between two passes. The collector runs with the
// server's default headroom.
func (b *bench) loadPhases() (phases, error) {
	defer gcfloor.Keep(64 << 20)() // portcullis serve's default
	path := filepath.Join(filepath.Dir(b.bigPolicy), "big-keys.json")
	// Each pass is timed by this process's CPU time (user and system, every
	// thread: the collector's too), not the wall clock: the harness does
	// nothing else meanwhile, and on a shared machine the wall clock counts
	// the other tenants' work.
	pass := func(fn func(r io.Reader) error) (time.Duration, error) {
		runtime.GC()
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		t0 := processCPU()
		err = fn(bufio.NewReaderSize(f, 1<<16))
		return processCPU() - t0, err
	}
	read, err := pass(func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
	if err != nil {
		return phases{}, err
	}
	digested, err := pass(func(r io.Reader) error { _, err := io.Copy(sha256.New(), r); return err })
	if err != nil {
		return phases{}, err
	}
	each := func(check bool) func(r io.Reader) error {
		return func(r io.Reader) error {
			var p source.Problems
			file := source.Streamed(path, func(string) int { return 0 })
			dec := source.NewJSONDecoder(r)
			// The harness's file: {"version":1,"keys":[…]}.
			for range 5 {
				if _, err := dec.ReadToken(); err != nil {
					return err
				}
			}
			for i := 0; dec.PeekKind() != ']'; i++ {
				var fe keys.FileEntry
				if err := source.DecodeJSONValue(dec, &fe); err != nil {
					return err
				}
				if check {
					fe.Entry(&p, keys.At{File: file, Index: i})
				}
			}
			return p.Err()
		}
	}
	decoded, err := pass(each(false))
	if err != nil {
		return phases{}, err
	}
	checked, err := pass(each(true))
	if err != nil {
		return phases{}, err
	}
	runtime.GC()
	t0 := processCPU()
	snap, err := policy.Load(b.bigPolicy, policy.LoadOptions{})
	loaded := processCPU() - t0
	if err != nil {
		return phases{}, err
	}
	t0 = processCPU()
	debug.FreeOSMemory() // as the server does once the policy is in
	collect := processCPU() - t0
	runtime.KeepAlive(snap)
	return phases{read: read, digest: digested - read, decode: decoded - read, validate: checked - decoded,
		compile: loaded - checked - (digested - read), collect: collect}, nil
}

var (
	startupOnly = flag.Bool("startup", false, "instead of the table: a replica with -keys keys from a file, from exec to the first /readyz 200, and where the time goes")
	starts      = flag.Int("starts", 5, "starts timed by -startup (and workload 6)")
)

// startupBench times -starts starts of the big policy and of the small
// one beside it (what a start costs without many keys), and breaks the big
// load down.
func (b *bench) startupBench(out io.Writer) error {
	fi, err := os.Stat(filepath.Join(filepath.Dir(b.bigPolicy), "big-keys.json"))
	if err != nil {
		return err
	}
	header(out, command())
	logf("startup: %d starts of %d keys and of %d, alternating", *starts, *bigKeys, smallKeys)
	var big, small startup
	for range *starts {
		for _, p := range []struct {
			policy string
			into   *startup
		}{{b.bigPolicy, &big}, {b.policy, &small}} {
			st, err := b.startN(p.policy, 1)
			if err != nil {
				return err
			}
			p.into.listening = append(p.into.listening, st.listening...)
			p.into.ready = append(p.into.ready, st.ready...)
			p.into.rssKB = append(p.into.rssKB, st.rssKB...)
			p.into.cpu = append(p.into.cpu, st.cpu...)
		}
	}
	logf("startup: load phases in process, 3 times")
	var ph []phases
	for range 3 {
		p, err := b.loadPhases()
		if err != nil {
			return err
		}
		ph = append(ph, p)
	}
	med := func(f func(phases) time.Duration) time.Duration {
		v := make([]time.Duration, len(ph))
		for i, p := range ph {
			v[i] = f(p)
		}
		return medianDur(v)
	}
	rss := func(v []int64) int64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] / 1024 }
	fmt.Fprintf(out, "A keys file of %d entries `{\"id\", \"sha256\", \"tenant\", \"tier\", \"created\"}` (%d MB, in the page cache), policy `keys_file:`; "+
		"each start a fresh process, timed by the harness from `exec` to the first `/readyz` 200 (polled every %s), %d starts alternating with the small policy's:\n\n",
		*bigKeys, fi.Size()/1e6, readyPoll, *starts)
	fmt.Fprintln(out, "| policy | exec → listening | exec → ready (median) | min | max | CPU used by then | RSS after |\n|---|---|---|---|---|---|---|")
	for _, r := range []struct {
		name string
		st   startup
	}{{fmt.Sprintf("%d keys", *bigKeys), big}, {fmt.Sprintf("%d keys (the small policy)", smallKeys), small}} {
		fmt.Fprintf(out, "| %s | %s | **%s** | %s | %s | %s | %d MB |\n", r.name, secs(medianDur(r.st.listening)), secs(medianDur(r.st.ready)),
			secs(slices.Min(r.st.ready)), secs(slices.Max(r.st.ready)), secs(medianDur(r.st.cpu)), rss(r.st.rssKB))
	}
	total := med(func(p phases) time.Duration { return p.read + p.digest + p.decode + p.validate + p.compile + p.collect })
	fmt.Fprintf(out, "\nWhere the time goes: the CPU time of the load's steps, run one after another in the harness's process with the server's code "+
		"(`policy.Load`, the collection after it) and collector headroom, medians of 3; each pass reads the whole file, and a step is the difference "+
		"between two passes. The server decodes on a goroutine of its own while another checks and indexes (keys.ReadFile), so on two free cores "+
		"exec → ready is less than the sum:\n\n")
	fmt.Fprintln(out, "| step | CPU | what |\n|---|---|---|")
	for _, r := range []struct {
		name string
		f    func(phases) time.Duration
		what string
	}{
		{"read", func(p phases) time.Duration { return p.read }, "the file through a 64 KiB buffer"},
		{"digest", func(p phases) time.Duration { return p.digest }, "SHA-256 of every byte (the policy's version)"},
		{"decode", func(p phases) time.Duration { return p.decode }, "strict JSON, entry by entry, into `keys.FileEntry`"},
		{"validate", func(p phases) time.Duration { return p.validate }, "`FileEntry.Entry`: digests, times, required fields"},
		{"index and policy checks", func(p phases) time.Duration { return p.compile }, "the rest of `policy.Load`: the pointer-free index, tiers, tenants, unique ids"},
		{"first collection", func(p phases) time.Duration { return p.collect }, "`debug.FreeOSMemory` after the load (the load's garbage returned)"},
	} {
		fmt.Fprintf(out, "| %s | %s | %s |\n", r.name, secs(med(r.f)), r.what)
	}
	ready := medianDur(big.ready)
	fmt.Fprintf(out, "| **sum** | %s | the server used %s of CPU by ready, and was ready %s after exec, of which %s a start of the small policy takes |\n",
		secs(total), secs(medianDur(big.cpu)), secs(ready), secs(medianDur(small.ready)))
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(out, "\n| target | measured | |\n|---|---|---|\n")
	fmt.Fprintf(out, "| %d keys from a file: exec → ready ≤ 5 s (docs/design.md §6) | %s | %s |\n", *bigKeys, secs(ready), verdict(ready <= 5*time.Second))
	fmt.Fprintf(out, "| the same, stretch ≤ 3 s (issue 26) | %s | %s |\n", secs(ready), verdict(ready <= 3*time.Second))
	fmt.Fprintf(out, "| resident memory after load ≤ 250 MB | %d MB | %s |\n", rss(big.rssKB), verdict(rss(big.rssKB) <= 250))
	return nil
}
