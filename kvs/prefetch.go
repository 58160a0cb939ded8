package kvs

import (
	"context"
	"sync/atomic"
)

// prefetched is a ControlPlane whose first answer for one stream was
// asked for ahead.
type prefetched struct {
	ControlPlane
	s              StreamSetup
	done           chan struct{}
	endpoint       string
	retentionHours int32
	err            error
	taken          atomic.Bool
}

// Prefetch asks cp to prepare stream s at once, in the background, and
// returns a ControlPlane whose first PrepareStream call for s takes that
// answer: the stream's checks and its endpoint lookup (two round trips)
// run while the source starts, not after it. Later calls go to cp, so a
// reconnect asks again. The background call ends with ctx.
func Prefetch(ctx context.Context, cp ControlPlane, s StreamSetup) ControlPlane {
	p := &prefetched{ControlPlane: cp, s: s, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.endpoint, p.retentionHours, p.err = cp.PrepareStream(ctx, s)
	}()
	return p
}

// PrepareStream implements ControlPlane.
func (p *prefetched) PrepareStream(ctx context.Context, s StreamSetup) (string, int32, error) {
	if s != p.s || !p.taken.CompareAndSwap(false, true) {
		return p.ControlPlane.PrepareStream(ctx, s)
	}
	select {
	case <-p.done:
		return p.endpoint, p.retentionHours, p.err
	case <-ctx.Done():
		return "", 0, ctx.Err()
	}
}
