package loadtest

import (
	"time"

	"github.com/prometheus/procfs"
)

// ProcCPU is the CPU time (user and system, all threads, in ticks of
// 10 ms) pid has used, and its command name, which tells a PostgreSQL
// backend from an unrelated process with the same pid here.
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

// MachineCPU is the busy and idle (with iowait) time of all CPUs since
// boot: busy minus what the measured processes used is what else ran.
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

// RSS is pid's resident set in bytes.
func RSS(pid int) (uint64, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.NewStatus()
	return st.VmRSS, err
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
