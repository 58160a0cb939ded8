//go:build unix

package kvs

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f that the kernel drops when the
// process ends, however it ends (flock).
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
