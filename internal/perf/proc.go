package perf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ProcUsage is what the kernel has accounted to a process (all its
// threads) so far.
type ProcUsage struct {
	User, System time.Duration
	// PeakRSS is the resident set's high-water mark (VmHWM), RSS the
	// current one (VmRSS), in bytes.
	PeakRSS, RSS int64
}

// CPU is user plus system time.
func (u ProcUsage) CPU() time.Duration { return u.User + u.System }

// Sub returns the CPU time spent between two readings; the memory figures
// are the later reading's.
func (u ProcUsage) Sub(earlier ProcUsage) ProcUsage {
	u.User -= earlier.User
	u.System -= earlier.System
	return u
}

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat. It is 100
// on every Linux architecture Go supports (the kernel fixes it for
// user space, whatever CONFIG_HZ is); reading it with sysconf would need cgo.
const clockTick = 10 * time.Millisecond

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcUsage{}, fmt.Errorf("reading the CPU time of process %d: %w", pid, err)
	}
	var u ProcUsage
	if u.User, u.System, err = ParseStat(stat); err != nil {
		return ProcUsage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcUsage{}, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	if u.PeakRSS, u.RSS, err = ParseStatus(status); err != nil {
		return ProcUsage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	return u, nil
}

var errStat = errors.New("/proc/PID/stat: unexpected format")

// ParseStat returns utime and stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name, field 2, is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func ParseStat(b []byte) (user, system time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errStat
	}
	// After the name: field 3 (state) onwards.
	f := bytes.Fields(b[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, 0, errStat
	}
	u, err1 := strconv.ParseUint(string(f[utime]), 10, 63)
	s, err2 := strconv.ParseUint(string(f[stime]), 10, 63)
	const most = uint64(1<<63-1) / uint64(clockTick)
	if err1 != nil || err2 != nil || u > most || s > most {
		return 0, 0, errStat
	}
	return time.Duration(u) * clockTick, time.Duration(s) * clockTick, nil
}

// ParseStatus returns VmHWM and VmRSS of /proc/PID/status, in bytes.
func ParseStatus(b []byte) (peak, rss int64, err error) {
	var havePeak, haveRSS bool
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		name, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var dst *int64
		switch string(name) {
		case "VmHWM":
			dst, havePeak = &peak, true
		case "VmRSS":
			dst, haveRSS = &rss, true
		default:
			continue
		}
		f := bytes.Fields(val)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, fmt.Errorf("/proc/PID/status: %s is %q, not \"<n> kB\"", name, bytes.TrimSpace(val))
		}
		// 53 bits: a count of kB that still fits in bytes as an int64.
		kb, err := strconv.ParseUint(string(f[0]), 10, 53)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/PID/status: %s is %q, not \"<n> kB\"", name, bytes.TrimSpace(val))
		}
		*dst = int64(kb) << 10
	}
	if !havePeak || !haveRSS {
		return 0, 0, errors.New("/proc/PID/status has no VmHWM or VmRSS (a kernel thread, or a process that has exited?)")
	}
	return peak, rss, nil
}
