package store

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// faultFS is the operating system's file system with two faults a test can
// turn on:
//
//   - a power cut (crash): every byte not fsynced vanishes, and so does
//     every file or directory whose entry was not made durable by syncing
//     its parent directory, as a disk that keeps only what it promised;
//   - a full disk: once the bytes written reach a budget, writes fail with
//     ENOSPC (a short write first, as Linux does).
type faultFS struct {
	OSFS
	root string

	mu      sync.Mutex
	durable map[string][]byte          // file → its content at its last fsync
	entries map[string]map[string]bool // directory → names made durable
	created map[string]bool            // paths created since the start
	budget  int64                      // bytes left to write; < 0: no limit
	syncs   int
}

func newFaultFS(root string) *faultFS {
	return &faultFS{root: root, durable: map[string][]byte{}, entries: map[string]map[string]bool{},
		created: map[string]bool{}, budget: -1}
}

// setBudget lets n more bytes be written before the disk is full; -1: no
// limit.
func (f *faultFS) setBudget(n int64) {
	f.mu.Lock()
	f.budget = n
	f.mu.Unlock()
}

func (f *faultFS) syncCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	_, statErr := os.Stat(name)
	file, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if statErr != nil {
		f.mu.Lock()
		f.created[filepath.Clean(name)] = true
		f.mu.Unlock()
	}
	return &faultFile{File: file, fs: f, name: filepath.Clean(name)}, nil
}

func (f *faultFS) MkdirAll(path string, perm fs.FileMode) error {
	var missing []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		missing = append(missing, p)
	}
	if err := os.MkdirAll(path, perm); err != nil {
		return err
	}
	f.mu.Lock()
	for _, p := range missing {
		f.created[p] = true
	}
	f.mu.Unlock()
	return nil
}

func (f *faultFS) SyncDir(name string) error {
	list, err := os.ReadDir(name)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	names := map[string]bool{}
	for _, e := range list {
		names[e.Name()] = true
	}
	f.entries[filepath.Clean(name)] = names
	f.syncs++
	return nil
}

// crash undoes everything that was not made durable. Nothing may have the
// files open.
func (f *faultFS) crash() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var paths []string
	for p := range f.created {
		paths = append(paths, p)
	}
	// Parents first: a directory that goes takes its files with it.
	for _, p := range sortedByDepth(paths) {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if !f.entries[filepath.Dir(p)][filepath.Base(p)] {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			continue
		}
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			if err := os.WriteFile(p, f.durable[p], 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedByDepth(paths []string) []string {
	out := append([]string(nil), paths...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if strings.Count(out[j], string(filepath.Separator)) < strings.Count(out[i], string(filepath.Separator)) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

type faultFile struct {
	*os.File
	fs   *faultFS
	name string
}

func (w *faultFile) Write(p []byte) (int, error) {
	w.fs.mu.Lock()
	budget := w.fs.budget
	if budget >= 0 {
		w.fs.budget = max(0, budget-int64(len(p)))
	}
	w.fs.mu.Unlock()
	if budget >= 0 && int64(len(p)) > budget {
		n, err := w.File.Write(p[:budget])
		if err == nil {
			err = &fs.PathError{Op: "write", Path: w.name, Err: syscall.ENOSPC}
		}
		return n, err
	}
	return w.File.Write(p)
}

func (w *faultFile) Sync() error {
	if err := w.File.Sync(); err != nil {
		return err
	}
	content, err := os.ReadFile(w.name)
	if err != nil {
		return err
	}
	w.fs.mu.Lock()
	w.fs.durable[w.name] = content
	w.fs.syncs++
	w.fs.mu.Unlock()
	return nil
}
