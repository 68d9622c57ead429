package token_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"authd/token"
)

// TestKeyDirOnReadOnlyMount: a Kubernetes secret volume is a tmpfs whose
// directory is mode 1777, mounted read-only: nobody can write there, so
// its mode does not count. Read-write, the same directory is refused.
func TestKeyDirOnReadOnlyMount(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=1777"); err != nil {
		// Unprivileged (a developer's own account) it cannot run. As
		// root, as CI runs, a refused mount is a failure: a skip there
		// would leave the read-only rule untested without anyone seeing.
		if errors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
			t.Skip("mounting a tmpfs needs CAP_SYS_ADMIN:", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	k := genKey(t, token.ES256, time.Now())
	writeKeyFile(t, dir, k, 0o440)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o777 {
		t.Fatalf("tmpfs mode %v, %v; want 1777", fi.Mode(), err)
	}
	if _, _, err := token.LoadKeyDir(dir); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("read-write 1777 tmpfs: got %v, want a refusal", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT|unix.MS_RDONLY, "mode=1777"); err != nil {
		t.Fatal(err)
	}
	keys, _, err := token.LoadKeyDir(dir)
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Fatalf("read-only 1777 tmpfs: got %d keys, %v; want %s", len(keys), err, k.ID)
	}
}
