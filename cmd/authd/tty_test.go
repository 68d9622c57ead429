package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"authd/store"
	"authd/store/storetest"
)

// TestUserAddPromptsWithoutEcho runs `authd user add` with a terminal on
// standard input: it must prompt twice and the terminal must not echo what
// is typed.
func TestUserAddPromptsWithoutEcho(t *testing.T) {
	t.Parallel()
	url := storetest.NewURL(t)
	role := storetest.NewRole(t)
	master, tty, err := openPTY()
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	defer master.Close()
	defer tty.Close()

	// Everything the terminal shows (echo included) arrives on master.
	var screen syncBuffer
	copied := make(chan struct{})
	go func() { defer close(copied); _, _ = io.Copy(&screen, master) }()

	var prompts syncBuffer
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		done <- run(ctx, []string{"authd", "user", "add", "carol", "--role", role}, getenv(baseEnv(url)), environList(baseEnv(url)), tty, io.Discard, &prompts)
	}()

	const password = "typed-at-the-terminal"
	for _, prompt := range []string{"Password: ", "Repeat password: "} {
		waitFor(t, func() bool { return strings.HasSuffix(prompts.String(), prompt) })
		waitFor(t, func() bool { return !echoOn(t, tty) }) // ReadPassword has turned echo off
		if _, err := master.Write([]byte(password + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("user add: %v (prompts %q)", err, prompts.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("user add did not finish")
	}
	if !echoOn(t, tty) {
		t.Error("the terminal's echo was not restored")
	}
	// With the terminal closed, reading the master ends once all the
	// terminal showed has been read.
	tty.Close()
	select {
	case <-copied:
	case <-time.After(time.Minute):
		t.Fatal("reading the terminal did not end once it was closed")
	}
	if strings.Contains(screen.String(), password) {
		t.Errorf("the terminal echoed the password: %q", screen.String())
	}
	if !store.CheckPassword(passwordHash(t, url, "carol"), password) {
		t.Error("the stored hash does not match the typed password")
	}
}

// openPTY opens a new pseudo-terminal as posix_openpt, unlockpt and
// ptsname do on Linux: master is the side a terminal emulator holds, tty
// the terminal a program reads from.
func openPTY() (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	// Through the raw connection, not Fd(), which would make reads of
	// master blocking and so not ended by Close.
	conn, err := master.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	var ioctlErr error
	err = conn.Control(func(fd uintptr) {
		if ioctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioctlErr != nil {
			ioctlErr = fmt.Errorf("unlock: %w", ioctlErr)
			return
		}
		if n, ioctlErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); ioctlErr != nil {
			ioctlErr = fmt.Errorf("get the terminal's number: %w", ioctlErr)
		}
	})
	if err = cmp.Or(err, ioctlErr); err != nil {
		return nil, nil, err
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	return master, tty, nil
}

func echoOn(t *testing.T, tty *os.File) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatalf("get termios: %v", err)
	}
	return tio.Lflag&unix.ECHO != 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
