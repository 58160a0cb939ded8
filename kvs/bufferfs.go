package kvs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// fileSystem is what the disk buffer needs of the file system: few
// operations, so that a test can put a layer that loses what was not
// synced (a power cut) or fails writes (a full disk) in its place.
type fileSystem interface {
	MkdirAll(dir string) error
	// Create makes a new file for writing; it fails if it exists.
	Create(name string) (bufferFile, error)
	// Open opens a file for reading.
	Open(name string) (fileReader, error)
	Rename(from, to string) error
	Remove(name string) error
	// List returns the names of the files in dir.
	List(dir string) ([]string, error)
	// SyncDir makes dir's entries (files created, renamed, removed)
	// durable.
	SyncDir(dir string) error
	// Lock takes dir's lock for this process, or says who holds it.
	Lock(dir string) (io.Closer, error)
}

// bufferFile is a file being written.
type bufferFile interface {
	io.Writer
	// Sync makes what was written durable.
	Sync() error
	Close() error
}

// fileReader reads a file at offsets.
type fileReader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// readAll reads a whole file into buf (grown as needed).
func readAll(fsys fileSystem, name string, buf []byte) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := int(f.Size())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (osFS) Create(name string) (bufferFile, error) {
	return os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}

func (osFS) Open(name string) (fileReader, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return osReader{f, fi.Size()}, nil
}

type osReader struct {
	*os.File
	size int64
}

func (r osReader) Size() int64 { return r.size }

func (osFS) Rename(from, to string) error { return os.Rename(from, to) }
func (osFS) Remove(name string) error     { return os.Remove(name) }

func (osFS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrBufferInUse is a buffer directory another process is sending from.
var ErrBufferInUse = errors.New("the buffer directory is in use")

func (osFS) Lock(dir string) (io.Closer, error) {
	name := filepath.Join(dir, "lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		holder := "another process"
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
			holder = fmt.Sprintf("process %d", pid)
		}
		return nil, fmt.Errorf("%w: %s holds %s (%v)", ErrBufferInUse, holder, name, err)
	}
	// Who holds it, for the message the next one gets.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
