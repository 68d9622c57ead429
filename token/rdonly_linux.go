package token

import "golang.org/x/sys/unix"

// readOnlyMount reports whether path is on a read-only mount: a
// Kubernetes secret volume (whose directory is mode 1777 on a tmpfs, but
// mounted read-only in the container) or a :ro bind mount.
func readOnlyMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Flags&unix.ST_RDONLY != 0
}
