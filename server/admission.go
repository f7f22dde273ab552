package server

import (
	"context"
	"sync/atomic"
)

// admission bounds the requests that hold memory: at most work run the model at once, and at
// most wait more are admitted (reading their bodies, or waiting for a work slot). A request
// beyond that is refused at once (429), before its body is read, so the memory of requests in
// the server is at most (work + wait) bodies plus work decoded images.
type admission struct {
	slots    chan struct{} // work slots
	admitted atomic.Int64  // holding or waiting for a slot
	waiting  atomic.Int64  // waiting for a slot
	limit    int64         // work + wait
	m        *metrics
}

func newAdmission(work, wait int, m *metrics) *admission {
	return &admission{slots: make(chan struct{}, work), limit: int64(work + wait), m: m}
}

// enter admits a request or reports false (the queue is full). Each true is followed by one
// leave.
func (a *admission) enter() bool {
	if a.admitted.Add(1) > a.limit {
		a.admitted.Add(-1)
		return false
	}
	return true
}

func (a *admission) leave() { a.admitted.Add(-1) }

// acquire waits for a work slot (an admitted request only); it fails when ctx ends first.
func (a *admission) acquire(ctx context.Context) error {
	select {
	case a.slots <- struct{}{}:
		a.m.working.Inc()
		return nil
	default:
	}
	a.m.queue.Set(float64(a.waiting.Add(1)))
	defer func() { a.m.queue.Set(float64(a.waiting.Add(-1))) }()
	select {
	case a.slots <- struct{}{}:
		a.m.working.Inc()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait counts n more (n < 0: fewer) admitted requests waiting without a work slot of their
// own: generate requests about to join their model's batch.
func (a *admission) wait(n int) {
	if n != 0 {
		a.m.queue.Set(float64(a.waiting.Add(int64(n))))
	}
}

func (a *admission) release() {
	<-a.slots
	a.m.working.Dec()
}
