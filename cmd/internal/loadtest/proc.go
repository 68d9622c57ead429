package loadtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the unit of the CPU times in /proc: 1/CLK_TCK seconds,
// from getconf (100 Hz if that fails: Linux's USER_HZ). It runs getconf
// on every call; callers keep the answer.
func ClockTick() time.Duration {
	hz := 100
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			hz = n
		}
	}
	return time.Second / time.Duration(hz)
}

// ProcCPU returns utime+stime of pid (all its threads), in clock ticks,
// and its command name: the CPU a process used, which a delta over a
// window turns into CPU per request. The name tells a PostgreSQL backend
// from an unrelated process that happens to have the same pid here.
func ProcCPU(pid int) (ticks int64, comm string, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	ticks, comm, err = parseStat(string(b))
	if err != nil {
		return 0, "", fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return ticks, comm, nil
}

// parseStat reads utime+stime and the command name from the text of
// /proc/<pid>/stat. The name is in parentheses and may hold spaces and
// parentheses itself, so the fields are counted from the last ')'.
func parseStat(s string) (int64, string, error) {
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return 0, "", errors.New("unexpected format")
	}
	comm := s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, "", errors.New("too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, "", errors.New("bad times")
	}
	return ut + st, comm, nil
}

// MachineCPU returns the busy and idle ticks of all CPUs together, from
// /proc/stat: over a window, busy minus what the measured processes used
// is what everything else on the machine took, which skews a result.
func MachineCPU() (busy, idle int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	busy, idle, err = parseMachineStat(string(b))
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/stat: %w", err)
	}
	return busy, idle, nil
}

// parseMachineStat sums the first ("cpu") line of /proc/stat: idle and
// iowait are idle, the rest (user nice system irq softirq steal) busy;
// guest time is already in user and nice.
func parseMachineStat(s string) (busy, idle int64, err error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, errors.New("unexpected format")
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bad time %q: %w", v, err)
		}
		if i == 3 || i == 4 {
			idle += n
		} else {
			busy += n
		}
	}
	return busy, idle, nil
}

// VmRSS is pid's resident set in kB, from /proc/<pid>/status: a leak
// shows as a resident set that keeps growing over a long run.
func VmRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	kb, err := parseVmRSS(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return kb, nil
}

// parseVmRSS finds the VmRSS line ("VmRSS:     12345 kB") of the text of
// /proc/<pid>/status.
func parseVmRSS(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("VmRSS: %w", err)
				}
				return n, nil
			}
		}
	}
	return 0, errors.New("no VmRSS line")
}
