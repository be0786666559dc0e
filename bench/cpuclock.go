package main

// This file holds the harness's CPU clocks: every CPU figure it reports
// (per check, per verification) is read from the scheduler's own count of
// a thread's or a process's run time, to the nanosecond.

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU returns the CPU time the calling OS thread has used, from the
// scheduler's own count (CLOCK_THREAD_CPUTIME_ID, to the nanosecond).
// getrusage(RUSAGE_THREAD), used before, splits that count into user and
// system time by the ticks it sampled, and at 250 Hz a 6 ms measurement
// read as 4 ms or 8 ms: 200 RS256 verifications of 30 µs each read 18 to
// 42 µs apiece, and the first-sight ratio swung with them.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic("bench: the thread's CPU clock: " + err.Error())
	}
	return time.Duration(ts.Nano())
}

// procCPU returns the CPU time of process pid so far, all its threads (the
// ones that ended included), from its CPU clock (the process clock id of
// clock_gettime, CPUCLOCK_SCHED). /proc/<pid>/stat, read before, counts
// user and system time apart in 10 ms ticks, each truncated: a round of
// cached checks (about 300 ms of CPU) read up to 20 ms, 6%, short, as much
// as the cached path's whole margin. 0 when the process is gone.
func procCPU(pid int) time.Duration {
	const cpuClockSched = 2 // the kernel's CPUCLOCK_SCHED: run time as the scheduler counts it
	var ts unix.Timespec
	if unix.ClockGettime(int32(^pid)<<3|cpuClockSched, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
