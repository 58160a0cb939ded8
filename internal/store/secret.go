package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Secret returns a random secret of size bytes kept in the data directory
// under name, creating it on first use (readable by the owner only). Signed
// tokens the server hands out (playback sessions) stay valid across
// restarts because the secret does.
func (s *Store) Secret(name string, size int) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("secret name %q", name)
	}
	path := filepath.Join(s.opts.Dir, name)
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(b) == size:
		return b, nil
	case err == nil:
		return nil, fmt.Errorf("%s holds %d bytes, not a %d-byte secret: delete it to make a new one (sessions issued with it end)", path, len(b), size)
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	b = make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	// Written whole or not at all: a torn secret would end every session.
	tmp, err := os.CreateTemp(s.opts.Dir, "."+name+".*")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(b)
	}
	if err == nil && !s.opts.NoSync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return s.Secret(name, size) // another process made it first
		}
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return b, nil
}
