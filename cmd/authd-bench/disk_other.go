//go:build !linux

package main

import (
	"errors"
	"os"
)

// flushData is fsync where there is no fdatasync.
func flushData(f *os.File) error { return f.Sync() }

// sameFilesystem is not known here: newDiskProbe finds PostgreSQL's data
// directory through /proc, which only Linux has.
func sameFilesystem(a, b string) (bool, error) {
	return false, errors.New("no device numbers on this system")
}
