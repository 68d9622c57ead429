//go:build !linux

package token

// readOnlyMount is false where authd does not know how to ask: only the
// mode bits count there.
func readOnlyMount(string) bool { return false }
