package store

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stream is a stream's description.
type Stream struct {
	Name           string            `json:"name"`
	ARN            string            `json:"arn"`
	DeviceName     string            `json:"deviceName,omitempty"`
	MediaType      string            `json:"mediaType,omitempty"`
	KmsKeyID       string            `json:"kmsKeyId,omitempty"`
	Version        string            `json:"version"`
	Status         string            `json:"status"`
	CreationTime   time.Time         `json:"creationTime"`
	RetentionHours int               `json:"retentionHours"`
	Tags           map[string]string `json:"tags,omitempty"`
}

// NewStream is what CreateStream asks for.
type NewStream struct {
	Name, DeviceName, MediaType, KmsKeyID string
	RetentionHours                        int
	Tags                                  map[string]string
}

func fragBucket(name string) []byte  { return []byte("f:" + name) }
func ptimeBucket(name string) []byte { return []byte("p:" + name) }

func newVersion() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// CreateStream creates a stream; ErrStreamExists if the name is taken.
func (s *Store) CreateStream(n NewStream) (Stream, error) {
	now := s.now().UTC().Truncate(time.Millisecond)
	st := Stream{
		Name: n.Name, DeviceName: n.DeviceName, MediaType: n.MediaType, KmsKeyID: n.KmsKeyID,
		RetentionHours: n.RetentionHours, Tags: n.Tags, Status: "ACTIVE", CreationTime: now,
		Version: newVersion(),
		ARN:     fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:stream/%s/%d", s.opts.Region, s.opts.Account, n.Name, now.UnixMilli()),
	}
	if st.KmsKeyID == "" {
		st.KmsKeyID = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/kinesisvideo", s.opts.Region, s.opts.Account)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if b.Get([]byte(n.Name)) != nil {
			return ErrStreamExists
		}
		for _, name := range [][]byte{fragBucket(n.Name), ptimeBucket(n.Name)} {
			if tx.Bucket(name) != nil {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return putJSON(b, n.Name, st)
	})
	if err != nil {
		return Stream{}, err
	}
	s.log.Info("stream created", "stream", n.Name, "retention_hours", n.RetentionHours)
	return st, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// Stream returns a stream by name.
func (s *Store) Stream(name string) (Stream, error) {
	var st Stream
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		st, err = getStream(tx, name)
		return err
	})
	return st, err
}

func getStream(tx *bolt.Tx, name string) (Stream, error) {
	var st Stream
	data := tx.Bucket(bucketStreams).Get([]byte(name))
	if data == nil {
		return st, fmt.Errorf("%w: %s", ErrStreamNotFound, name)
	}
	return st, json.Unmarshal(data, &st)
}

// StreamByARN returns a stream by its ARN.
func (s *Store) StreamByARN(arn string) (Stream, error) {
	// arn:aws:kinesisvideo:region:account:stream/NAME/CREATION
	parts := strings.Split(arn, "/")
	if len(parts) != 3 {
		return Stream{}, fmt.Errorf("%w: %s", ErrStreamNotFound, arn)
	}
	st, err := s.Stream(parts[1])
	if err != nil || st.ARN != arn {
		return Stream{}, fmt.Errorf("%w: %s", ErrStreamNotFound, arn)
	}
	return st, nil
}

// ListStreams returns streams whose names start with prefix, in name
// order, after the name `after`, at most max.
func (s *Store) ListStreams(prefix, after string, max int) (list []Stream, more bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketStreams).Cursor()
		start := []byte(prefix)
		if after >= prefix {
			start = []byte(after + "\x00")
		}
		for k, v := c.Seek(start); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			if len(list) == max {
				more = true
				return nil
			}
			var st Stream
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			list = append(list, st)
		}
		return nil
	})
	return list, more, err
}

// UpdateStream applies fn to a stream if version matches (or is empty)
// and gives it a new version.
func (s *Store) UpdateStream(name, version string, fn func(*Stream) error) (Stream, error) {
	return s.updateStream(name, version, true, fn)
}

func (s *Store) updateStream(name, version string, bump bool, fn func(*Stream) error) (Stream, error) {
	var st Stream
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if st, err = getStream(tx, name); err != nil {
			return err
		}
		if version != "" && version != st.Version {
			return fmt.Errorf("%w: current version is %s", ErrVersionMismatch, st.Version)
		}
		if err := fn(&st); err != nil {
			return err
		}
		if bump {
			st.Version = newVersion()
		}
		return putJSON(tx.Bucket(bucketStreams), name, st)
	})
	return st, err
}

// TagStream adds or replaces tags. Tags are not part of the stream's
// versioned configuration.
func (s *Store) TagStream(name string, tags map[string]string, limit int) error {
	_, err := s.updateStream(name, "", false, func(st *Stream) error {
		merged := maps.Clone(st.Tags)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, tags)
		if len(merged) > limit {
			return fmt.Errorf("%w: a stream can have at most %d tags", ErrTooManyTags, limit)
		}
		st.Tags = merged
		return nil
	})
	return err
}

// ErrTooManyTags is returned by TagStream past the limit.
var ErrTooManyTags = fmt.Errorf("too many tags")

// UntagStream removes tags.
func (s *Store) UntagStream(name string, keys []string) error {
	_, err := s.updateStream(name, "", false, func(st *Stream) error {
		for _, k := range keys {
			delete(st.Tags, k)
		}
		return nil
	})
	return err
}

// DeleteStream removes a stream, its index and its media.
func (s *Store) DeleteStream(name, version string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		st, err := getStream(tx, name)
		if err != nil {
			return err
		}
		if version != "" && version != st.Version {
			return fmt.Errorf("%w: current version is %s", ErrVersionMismatch, st.Version)
		}
		for _, b := range [][]byte{fragBucket(name), ptimeBucket(name)} {
			if tx.Bucket(b) != nil {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
			}
		}
		return tx.Bucket(bucketStreams).Delete([]byte(name))
	})
	if err != nil {
		return err
	}
	st := s.state(name)
	st.mu.Lock()
	st.closeSegment()
	st.deleted = true
	st.mu.Unlock()
	st.wake()
	s.mu.Lock()
	delete(s.streams, name)
	s.mu.Unlock()
	if err := os.RemoveAll(s.mediaDir(name)); err != nil {
		s.log.Warn("could not remove a deleted stream's media", "stream", name, "err", err)
	}
	s.log.Info("stream deleted", "stream", name)
	return nil
}
