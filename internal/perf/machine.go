package perf

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is what the numbers were measured on.
type Machine struct {
	CPU    string // model name
	Cores  int
	Memory int64 // bytes
	Kernel string
	Go     string
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.0f GiB, Linux %s, %s", m.CPU, m.Cores, float64(m.Memory)/(1<<30), m.Kernel, m.Go)
}

// DescribeMachine reads the CPU model, cores and memory from /proc.
func DescribeMachine() Machine {
	m := Machine{CPU: "unknown CPU", Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if v, ok := procField(b, "model name"); ok {
			m.CPU = v
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if v, ok := procField(b, "MemTotal"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
			m.Memory = kb << 10
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField returns the value of the first "name : value" line.
func procField(b []byte, name string) (string, bool) {
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		k, v, ok := bytes.Cut(line, []byte{':'})
		if ok && string(bytes.TrimSpace(k)) == name {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}

// Load is the kernel's load average: runnable and uninterruptible tasks
// over 1, 5 and 15 minutes. On a shared machine it says how much the other
// work competed with what was measured.
type Load struct{ One, Five, Fifteen float64 }

func (l Load) String() string { return fmt.Sprintf("%.2f %.2f %.2f", l.One, l.Five, l.Fifteen) }

// ReadLoad reads /proc/loadavg.
func ReadLoad() (Load, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return Load{}, fmt.Errorf("reading the load average: %w", err)
	}
	return ParseLoad(b)
}

// ParseLoad parses the first three fields of /proc/loadavg.
func ParseLoad(b []byte) (Load, error) {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return Load{}, fmt.Errorf("/proc/loadavg: unexpected format %q", b)
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Load{}, fmt.Errorf("/proc/loadavg: unexpected format %q", b)
		}
		v[i] = x
	}
	return Load{v[0], v[1], v[2]}, nil
}

// FSType names the file system dir is on: fsync costs nothing on tmpfs,
// so latencies that include it depend on the answer.
func FSType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	switch uint64(st.Type) {
	case 0xEF53:
		return "ext4"
	case 0x01021994:
		return "tmpfs"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x794C7630:
		return "overlayfs"
	case 0x2FC12FC1:
		return "zfs"
	}
	return fmt.Sprintf("file system 0x%X", uint64(st.Type))
}

// SelfCPU is the CPU time this process has used so far (all threads).
func SelfCPU() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
