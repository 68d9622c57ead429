package main

import (
	"fmt"
	"os"
	"syscall"
)

// flushData is PostgreSQL's default WAL flush on Linux (wal_sync_method
// fdatasync).
func flushData(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// sameFilesystem reports whether paths a and b (symbolic links followed)
// are on one device.
func sameFilesystem(a, b string) (bool, error) {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return false, fmt.Errorf("stat %s: %w", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return false, fmt.Errorf("stat %s: %w", b, err)
	}
	return sa.Dev == sb.Dev, nil
}
