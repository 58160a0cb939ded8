package wiretap

import (
	"sync"
	"time"

	"github.com/kvsgo/kvsgo/kvs"
)

// recorder writes what the scanners of one connection find into its
// current PutMedia session. Both directions of the connection record into
// it, and the tap reads it, so each call takes the lock.
type recorder struct {
	mu  sync.Mutex
	s   *Session
	cur int // index of the fragment being received, -1 before the first
}

func (r *recorder) do(f func(s *Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s != nil {
		f(r.s)
	}
}

func (r *recorder) fragmentStarted(at time.Time) {
	r.do(func(s *Session) {
		s.Fragments = append(s.Fragments, Fragment{Started: at})
		r.cur = len(s.Fragments) - 1
	})
}

func (r *recorder) fragmentTimecode(tc int64) {
	r.do(func(s *Session) {
		if r.cur >= 0 {
			s.Fragments[r.cur].Timecode = tc
			s.Fragments[r.cur].LastTimecode = tc
		}
	})
}

func (r *recorder) fragmentCompleted(at time.Time) {
	r.do(func(s *Session) {
		if r.cur >= 0 && s.Fragments[r.cur].Completed.IsZero() {
			s.Fragments[r.cur].Completed = at
		}
	})
}

func (r *recorder) frame(f Frame) {
	r.do(func(s *Session) {
		if r.cur < 0 {
			return
		}
		f.Fragment = r.cur
		s.Frames = append(s.Frames, f)
		fr := &s.Fragments[r.cur]
		fr.Frames++
		fr.LastTimecode = max(fr.LastTimecode, f.Timecode)
	})
}

func (r *recorder) scale(ns int64) { r.do(func(s *Session) { s.Scale = ns }) }

func (r *recorder) ack(a kvs.Ack, at time.Time) {
	r.do(func(s *Session) { s.Acks = append(s.Acks, AckAt{Ack: a, At: at}) })
}

func (r *recorder) body(at time.Time, first bool) {
	r.do(func(s *Session) {
		if first {
			s.FirstBody = at
		} else {
			s.BodyEnded = at
		}
	})
}

func (r *recorder) scanErr(err error) {
	r.do(func(s *Session) {
		if s.ScanErr == "" {
			s.ScanErr = err.Error()
		}
	})
}
