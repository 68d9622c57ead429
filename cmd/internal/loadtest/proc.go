package loadtest

import (
	"time"

	"github.com/prometheus/procfs"
)

// ProcCPU is the CPU time (user and system, all threads) pid has used and
// its command name: a delta over a window divided by the requests in it
// is CPU per request, and the name tells a PostgreSQL backend from an
// unrelated process that has the same pid here. The kernel counts in
// ticks of 1/USER_HZ (10 ms), so short windows are coarse.
func ProcCPU(pid int) (time.Duration, string, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, "", err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, "", err
	}
	return seconds(st.CPUTime()), st.Comm, nil
}

// MachineCPU is the busy and idle time of all CPUs together since boot
// (/proc/stat): over a window, busy minus what the measured processes
// used is what everything else on the machine took, which skews a result.
// Idle and iowait are idle; guest time is already in user and nice.
func MachineCPU() (busy, idle time.Duration, err error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return 0, 0, err
	}
	st, err := fs.Stat()
	if err != nil {
		return 0, 0, err
	}
	c := st.CPUTotal
	return seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal), seconds(c.Idle + c.Iowait), nil
}

// RSS is pid's resident set in bytes: a leak shows as a resident set that
// keeps growing over a long run.
func RSS(pid int) (uint64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	return st.VmRSS, err
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
