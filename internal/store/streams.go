package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StreamID is a stream's identity: its name and creation time
// ("name@<unix ms>", the last two parts of its ARN). Fragments, media files
// and live state are keyed by it, so a stream created again under an old
// name starts empty. Streams made by versions before IDs existed keep their
// name as their ID.
type StreamID string

// Name is the name of the stream the ID belongs to.
func (id StreamID) Name() string {
	name, _, _ := strings.Cut(string(id), "@")
	return name
}

// Stream is a stream's description.
type Stream struct {
	ID             StreamID          `json:"id"`
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

	// The last PutMedia session that ended by finishing its body (not by
	// breaking off): the stream's newest fragment then and when. Cleared
	// when the next session starts. GetMedia readers that reach that
	// fragment end a few seconds later, as the service's do.
	Ended   bool   `json:"ended,omitempty"`
	EndSeq  uint64 `json:"endSeq,omitempty"`
	EndedMS int64  `json:"endedMs,omitempty"`
}

// NewStream is what CreateStream asks for.
type NewStream struct {
	Name, DeviceName, MediaType, KmsKeyID string
	RetentionHours                        int
	Tags                                  map[string]string
}

func fragBucket(id StreamID) []byte  { return []byte("f:" + string(id)) }
func ptimeBucket(id StreamID) []byte { return []byte("p:" + string(id)) }

func newVersion() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// creationMS hands out a creation time later than any given before, so
// that a stream created again within the same millisecond still gets a new
// ARN and ID.
func (s *Store) creationMS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms := s.now().UnixMilli()
	if ms <= s.lastMS {
		ms = s.lastMS + 1
	}
	s.lastMS = ms
	return ms
}

// CreateStream creates a stream, CREATING until the transition delay has
// passed; ErrStreamExists if a stream of that name exists in any status.
func (s *Store) CreateStream(n NewStream) (Stream, error) {
	ms := s.creationMS()
	st := Stream{
		ID:   StreamID(n.Name + "@" + strconv.FormatInt(ms, 10)),
		Name: n.Name, DeviceName: n.DeviceName, MediaType: n.MediaType, KmsKeyID: n.KmsKeyID,
		RetentionHours: n.RetentionHours, Tags: n.Tags, Status: StatusCreating, CreationTime: time.UnixMilli(ms).UTC(),
		Version: newVersion(),
		ARN:     fmt.Sprintf("arn:aws:kinesisvideo:%s:%s:stream/%s/%d", s.opts.Region, s.opts.Account, n.Name, ms),
	}
	if s.opts.TransitionDelay == 0 {
		st.Status = StatusActive
	}
	if st.KmsKeyID == "" {
		st.KmsKeyID = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/kinesisvideo", s.opts.Region, s.opts.Account)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStreams)
		if b.Get([]byte(n.Name)) != nil {
			return ErrStreamExists
		}
		for _, name := range [][]byte{fragBucket(st.ID), ptimeBucket(st.ID)} {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("creating the stream's index: %w", err)
			}
		}
		return putJSON(b, n.Name, st)
	})
	if err != nil {
		return Stream{}, err
	}
	if st.Status == StatusCreating {
		s.settleLater(st.ID, StatusCreating)
	}
	s.log.Info("stream created", "stream", n.Name, "arn", st.ARN, "retention_hours", n.RetentionHours)
	return st, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// Stream returns the stream that now has this name, in whatever status.
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

// getStreamID returns the stream with this identity; ErrStreamNotFound once
// it is deleted, even if another stream now has its name.
func getStreamID(tx *bolt.Tx, id StreamID) (Stream, error) {
	st, err := getStream(tx, id.Name())
	if err != nil || st.ID != id {
		return Stream{}, fmt.Errorf("%w: %s", ErrStreamNotFound, id)
	}
	return st, nil
}

// StreamByID returns a stream by its identity.
func (s *Store) StreamByID(id StreamID) (Stream, error) {
	var st Stream
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		st, err = getStreamID(tx, id)
		return err
	})
	return st, err
}

// StreamByARN returns a stream by its ARN.
func (s *Store) StreamByARN(arn string) (Stream, error) {
	// arn:aws:kinesisvideo:region:account:stream/NAME/CREATION
	parts := strings.Split(arn, "/")
	if len(parts) != 3 || !strings.HasSuffix(parts[0], ":stream") {
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

// UpdateStream applies fn to an ACTIVE stream if version matches (or is
// empty), gives it a new version, and leaves it UPDATING for the
// transition delay. ErrNotActive while it is in another status.
func (s *Store) UpdateStream(id StreamID, version string, fn func(*Stream) error) (Stream, error) {
	st, err := s.updateStream(id, func(st *Stream) error {
		if st.Status != StatusActive {
			return fmt.Errorf("%w: it is %s", ErrNotActive, st.Status)
		}
		if version != "" && version != st.Version {
			return fmt.Errorf("%w: current version is %s", ErrVersionMismatch, st.Version)
		}
		if err := fn(st); err != nil {
			return err
		}
		st.Version = newVersion()
		if s.opts.TransitionDelay > 0 {
			st.Status = StatusUpdating
		}
		return nil
	})
	if err == nil && st.Status == StatusUpdating {
		s.settleLater(id, StatusUpdating)
	}
	return st, err
}

func (s *Store) updateStream(id StreamID, fn func(*Stream) error) (Stream, error) {
	var st Stream
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if st, err = getStreamID(tx, id); err != nil {
			return err
		}
		if err := fn(&st); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketStreams), st.Name, st)
	})
	return st, err
}

// ErrTooManyTags is returned by TagStream past the limit.
var ErrTooManyTags = fmt.Errorf("too many tags")

// TagStream adds or replaces tags. Tags are not part of the stream's
// versioned configuration.
func (s *Store) TagStream(id StreamID, tags map[string]string, limit int) error {
	_, err := s.updateStream(id, func(st *Stream) error {
		merged := maps.Clone(st.Tags)
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, tags)
		if len(merged) > limit {
			return fmt.Errorf("%w: a stream can have at most %d tags; it has %d and the request adds %d",
				ErrTooManyTags, limit, len(st.Tags), len(merged)-len(st.Tags))
		}
		st.Tags = merged
		return nil
	})
	return err
}

// UntagStream removes tags.
func (s *Store) UntagStream(id StreamID, keys []string) error {
	_, err := s.updateStream(id, func(st *Stream) error {
		for _, k := range keys {
			delete(st.Tags, k)
		}
		return nil
	})
	return err
}

// DeleteStream deletes an ACTIVE stream: its fragments and media go at once,
// its PutMedia and GetMedia sessions are told (Gone), and it shows as
// DELETING for the transition delay. ErrNotActive in another status.
func (s *Store) DeleteStream(id StreamID, version string) error {
	st := s.acquire(id)
	defer s.release(st)
	// Appends finish or wait: none lands after the index is gone.
	st.mu.Lock()
	defer st.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := getStreamID(tx, id)
		if err != nil {
			return err
		}
		if rec.Status != StatusActive {
			return fmt.Errorf("%w: it is %s", ErrNotActive, rec.Status)
		}
		if version != "" && version != rec.Version {
			return fmt.Errorf("%w: current version is %s", ErrVersionMismatch, rec.Version)
		}
		for _, b := range [][]byte{fragBucket(id), ptimeBucket(id)} {
			if tx.Bucket(b) != nil {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
			}
		}
		if s.opts.TransitionDelay == 0 {
			return tx.Bucket(bucketStreams).Delete([]byte(rec.Name))
		}
		rec.Status = StatusDeleting
		return putJSON(tx.Bucket(bucketStreams), rec.Name, rec)
	})
	if err != nil {
		return err
	}
	st.closeSegment()
	st.markDeleted()
	if s.opts.TransitionDelay > 0 {
		s.settleLater(id, StatusDeleting)
	}
	if err := s.fs.RemoveAll(s.mediaDir(id)); err != nil {
		s.log.Warn("could not remove a deleted stream's media", "stream", id.Name(), "err", err)
	}
	s.log.Info("stream deleted", "stream", id.Name(), "id", id)
	return nil
}

// indexFormat is the layout of the index this code writes, kept in the
// meta bucket: 2 flips the sign bit of producer timestamps in the
// producer-time index, so that negative ones sort first.
const indexFormat = 2

var keyFormat = []byte("format")

// upgrade brings an older index up to date: producer-time keys of format
// 1 (timestamps as unsigned numbers, which put negative ones last) are
// rewritten; a stream from before stream IDs existed keeps its name as its
// ID (the same bucket and directory names as before), and its
// producer-time index gains the sequence number in its keys, so that equal
// timestamps can be told apart.
func (s *Store) upgrade() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		format := uint64(1)
		if v := meta.Get(keyFormat); len(v) == 8 {
			format = binary.BigEndian.Uint64(v)
		}
		if format > indexFormat {
			return fmt.Errorf("the index was written by a newer kvsgo (format %d; this one reads up to %d)", format, indexFormat)
		}
		b := tx.Bucket(bucketStreams)
		var all, old []Stream
		err := b.ForEach(func(_, v []byte) error {
			var st Stream
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			if st.ID == "" {
				st.ID = StreamID(st.Name)
				old = append(old, st)
			}
			all = append(all, st)
			return nil
		})
		if err != nil {
			return err
		}
		type entry struct{ k, v []byte }
		entries := func(pb *bolt.Bucket, keyLen int) []entry {
			var list []entry
			_ = pb.ForEach(func(k, v []byte) error {
				if len(k) == keyLen {
					list = append(list, entry{append([]byte(nil), k...), append([]byte(nil), v...)})
				}
				return nil
			})
			return list
		}
		if format < 2 {
			for _, st := range all {
				pb := tx.Bucket(ptimeBucket(st.ID))
				if pb == nil {
					continue
				}
				list := entries(pb, 16)
				for _, e := range list {
					if err := pb.Delete(e.k); err != nil {
						return err
					}
				}
				for _, e := range list {
					ms := int64(binary.BigEndian.Uint64(e.k)) // format 1: the timestamp as it was
					if err := pb.Put(ptimeKey(ms, binary.BigEndian.Uint64(e.k[8:])), e.v); err != nil {
						return err
					}
				}
				if len(list) > 0 {
					s.log.Info("index upgraded: producer timestamps before 1970 now sort first", "stream", st.Name, "entries", len(list))
				}
			}
		}
		for _, st := range old {
			if st.Status == "" {
				st.Status = StatusActive
			}
			if err := putJSON(b, st.Name, st); err != nil {
				return err
			}
			pb := tx.Bucket(ptimeBucket(st.ID))
			if pb == nil {
				continue
			}
			for _, e := range entries(pb, 8) {
				if err := pb.Delete(e.k); err != nil {
					return err
				}
				if len(e.v) == 8 {
					if err := pb.Put(ptimeKey(int64(binary.BigEndian.Uint64(e.k)), binary.BigEndian.Uint64(e.v)), e.v); err != nil {
						return err
					}
				}
			}
			s.log.Info("index upgraded", "stream", st.Name)
		}
		if format != indexFormat {
			return meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, indexFormat))
		}
		return nil
	})
}
