package kvs

import "time"

// EventType says what an Event reports.
type EventType int

// Producer events.
const (
	EventConnected EventType = iota + 1
	EventDisconnected
	EventAck
	EventAckError
	EventDropped
	EventWarning
	EventFatal
	// EventDiscontinuity: the source's timestamps jumped; the stream was
	// re-based onto its own clock.
	EventDiscontinuity
)

// Event is something the producer tells its user.
type Event struct {
	Type    EventType
	Time    time.Time
	Message string
	Ack     Ack
	Err     error
}

func (p *Producer) event(e Event) {
	e.Time = p.cfg.Now()
	p.cfg.OnEvent(e)
}

// queue records an event while mu is held; flush sends queued events
// once it is released, so that OnEvent may call back into the producer.
func (p *Producer) queue(e Event) { p.pending = append(p.pending, e) }

func (p *Producer) flush() {
	p.mu.Lock()
	events := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, e := range events {
		p.event(e)
	}
}

// warnOnce queues a warning the first time; mu must be held.
func (p *Producer) warnOnce(key, msg string) {
	if p.warned[key] {
		return
	}
	p.warned[key] = true
	p.queue(Event{Type: EventWarning, Message: msg})
}
