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
	return time.Duration(st.CPUTime() * float64(time.Second)), st.Comm, err
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
