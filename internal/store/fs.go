package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// FS is the file system the store keeps media segments in: the operating
// system's, or one a test gives to fail or forget on purpose (bytes never
// synced vanish in a simulated power cut; a full disk). The index is a
// bbolt file in the data directory and does its own syncing.
type FS interface {
	// OpenFile is os.OpenFile.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	MkdirAll(path string, perm fs.FileMode) error
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Remove(name string) error
	RemoveAll(path string) error
	// SyncDir makes the directory's entries (files created or removed in
	// it) durable.
	SyncDir(name string) error
}

// File is an open segment file.
type File interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Close() error
}

// OSFS is the operating system's file system.
type OSFS struct{}

// OpenFile opens a file with os.OpenFile.
func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil File
	}
	return f, nil
}

// MkdirAll is os.MkdirAll.
func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }

// ReadDir is os.ReadDir.
func (OSFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// Stat is os.Stat.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// Remove is os.Remove.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll is os.RemoveAll.
func (OSFS) RemoveAll(path string) error { return os.RemoveAll(path) }

// SyncDir fsyncs the directory.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrNoSpace: the disk of the data directory is full (or the user's quota
// reached). Nothing half-written is kept; writing works again once space
// is freed.
var ErrNoSpace = errors.New("no space left on the disk of the data directory")

// diskErr marks a full disk as ErrNoSpace, so that callers can tell it from
// other failures and say what to do.
func diskErr(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%s: %w (%w)", what, ErrNoSpace, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
