//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package auth

import (
	"errors"
	"fmt"
	"runtime"
)

// lockFile is unsupported where syscall.Flock is unavailable: writing the
// key store without a lock could lose a concurrently created key.
func lockFile(string) (func(), error) {
	return nil, fmt.Errorf("key store locking on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
