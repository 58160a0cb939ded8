//go:build !unix

package kvs

import (
	"errors"
	"os"
)

// lockFile: a disk buffer needs flock, which Unix systems have.
func lockFile(*os.File) error {
	return errors.New("locking a buffer directory is not supported on this system")
}
