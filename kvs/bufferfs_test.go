package kvs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// faultFS is a file system in memory that keeps, like a disk, what was
// written apart from what was synced: crash() leaves only what a power
// cut would (the synced bytes of files whose names were synced, and at
// worst a random part of the rest), and full makes writes fail as on a
// full disk.
type faultFS struct {
	mu      sync.Mutex
	rng     *rand.Rand
	visible map[string]*inode // what the running program sees
	durable map[string]*inode // the directory entries on disk
	locked  map[string]bool
	full    bool // writes fail with ENOSPC
	syncs   int  // file syncs, for tests that count them
}

type inode struct {
	data   []byte // as written (the page cache)
	synced []byte // as on disk
}

func newFaultFS(seed uint64) *faultFS {
	return &faultFS{rng: rand.New(rand.NewPCG(seed, 7)), visible: map[string]*inode{}, durable: map[string]*inode{}, locked: map[string]bool{}}
}

func (f *faultFS) MkdirAll(string) error { return nil }

func (f *faultFS) Create(name string) (bufferFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.visible[name]; ok {
		return nil, os.ErrExist
	}
	if f.full {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	n := &inode{}
	f.visible[name] = n
	return &faultFile{fs: f, n: n, name: name}, nil
}

type faultFile struct {
	fs   *faultFS
	n    *inode
	name string
}

func (w *faultFile) Write(p []byte) (int, error) {
	w.fs.mu.Lock()
	defer w.fs.mu.Unlock()
	if w.fs.full {
		return 0, &os.PathError{Op: "write", Path: w.name, Err: syscall.ENOSPC}
	}
	w.n.data = append(w.n.data, p...)
	return len(p), nil
}

func (w *faultFile) Sync() error {
	w.fs.mu.Lock()
	defer w.fs.mu.Unlock()
	w.n.synced = bytes.Clone(w.n.data)
	w.fs.syncs++
	return nil
}

func (w *faultFile) Close() error { return nil }

func (f *faultFS) Open(name string) (fileReader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.visible[name]
	if !ok {
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	}
	return byteReader{bytes.NewReader(bytes.Clone(n.data))}, nil
}

type byteReader struct{ *bytes.Reader }

func (byteReader) Close() error { return nil }

func (f *faultFS) Rename(from, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.visible[from]
	if !ok {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: os.ErrNotExist}
	}
	delete(f.visible, from)
	f.visible[to] = n
	return nil
}

func (f *faultFS) Remove(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.visible[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: os.ErrNotExist}
	}
	delete(f.visible, name)
	return nil
}

func (f *faultFS) List(dir string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for name := range f.visible {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (f *faultFS) SyncDir(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name := range f.durable {
		if filepath.Dir(name) == dir {
			delete(f.durable, name)
		}
	}
	for name, n := range f.visible {
		if filepath.Dir(name) == dir {
			f.durable[name] = n
		}
	}
	return nil
}

func (f *faultFS) Lock(dir string) (io.Closer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.locked[dir] {
		return nil, fmt.Errorf("%w: %s is locked", ErrBufferInUse, dir)
	}
	f.locked[dir] = true
	return lockRelease(func() {
		f.mu.Lock()
		delete(f.locked, dir)
		f.mu.Unlock()
	}), nil
}

type lockRelease func()

func (l lockRelease) Close() error { l(); return nil }

// crash is a power cut: what survives is the directory entries that were
// synced, each file with its synced bytes and, beyond them, a random part
// of what was written but not synced (pages the kernel happened to write
// back, in any order: a run of bytes may be left out as zeros). Locks go
// with the process.
func (f *faultFS) crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	after := map[string]*inode{}
	for name, n := range f.durable {
		data := bytes.Clone(n.synced)
		if extra := len(n.data) - len(data); extra > 0 && f.rng.IntN(2) == 0 {
			keep := f.rng.IntN(extra + 1)
			tail := bytes.Clone(n.data[len(data) : len(data)+keep])
			if len(tail) > 0 && f.rng.IntN(2) == 0 {
				i := f.rng.IntN(len(tail))
				clear(tail[i:min(len(tail), i+f.rng.IntN(64)+1)]) // a page not written back
			}
			data = append(data, tail...)
		}
		m := &inode{data: data, synced: bytes.Clone(data)}
		after[name] = m
	}
	f.visible, f.durable = after, map[string]*inode{}
	for name, n := range after {
		f.durable[name] = n
	}
	f.locked = map[string]bool{}
}

// kill is a kill -9: the program's files stay as written (the kernel has
// them), its locks go.
func (f *faultFS) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.locked = map[string]bool{}
}

func (f *faultFS) setFull(full bool) {
	f.mu.Lock()
	f.full = full
	f.mu.Unlock()
}

func (f *faultFS) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name := range f.visible {
		out = append(out, filepath.Base(name))
	}
	sort.Strings(out)
	return out
}
