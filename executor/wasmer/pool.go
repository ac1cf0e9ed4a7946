//go:build wasmer

package wasmer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// pool owns the worker processes. Every goroutine it starts is tracked by wg
// and ends once close has killed the workers.
type pool struct {
	opts Options
	log  zerolog.Logger

	idle     chan *proc    // workers ready for a request
	spawns   chan struct{} // a worker is to be started
	closing  chan struct{} // closed by close
	spawnerd chan struct{} // closed when the spawner returns

	mu     sync.Mutex
	closed bool
	procs  map[*proc]struct{} // every live worker
	wg     sync.WaitGroup
}

var errPoolClosed = errors.New("the wasmer engine is closed")

// startPool starts opts.Workers workers and returns once they have all
// answered the handshake, with whether they can meter fuel.
func startPool(opts Options, log zerolog.Logger) (*pool, bool, error) {
	p := &pool{
		opts:     opts,
		log:      log,
		idle:     make(chan *proc, opts.Workers),
		spawns:   make(chan struct{}, opts.Workers),
		closing:  make(chan struct{}),
		spawnerd: make(chan struct{}),
		procs:    map[*proc]struct{}{},
	}
	// The first workers are started here, on the spawner's thread, so that
	// a failure is New's; the spawner then replaces lost workers.
	started := make(chan error, 1)
	var metering bool
	go p.spawner(func(spawn func() (*proc, error)) {
		for i := 0; i < opts.Workers; i++ {
			w, err := spawn()
			if err != nil {
				started <- err
				return
			}
			metering = w.metering
			p.idle <- w
		}
		started <- nil
	})
	if err := <-started; err != nil {
		_ = p.close(context.Background())
		return nil, false, err
	}
	return p, metering, nil
}

// spawner starts workers, on one OS thread that lives as long as the pool:
// a worker's Pdeathsig fires when the thread that forked it ends, and the Go
// runtime may end a thread, but not this locked one until close.
func (p *pool) spawner(first func(spawn func() (*proc, error))) {
	defer close(p.spawnerd)
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	first(p.spawn)
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-p.closing:
			return
		case <-p.spawns:
		}
		for {
			w, err := p.spawn()
			if err == nil {
				p.idle <- w
				backoff = 100 * time.Millisecond
				break
			}
			if errors.Is(err, errPoolClosed) {
				return
			}
			p.log.Error().Err(err).Dur("retry_in", backoff).Msg("wasmer worker failed to start")
			select {
			case <-p.closing:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// acquire takes an idle worker, waiting for one until ctx ends or the
// engine closes. A worker found dead is replaced and skipped.
func (p *pool) acquire(ctx context.Context, closing context.Context) (*proc, error) {
	if err := ctx.Err(); err != nil { // before a select that might pick a worker
		return nil, err
	}
	for {
		select {
		case w := <-p.idle:
			if w.dead() {
				p.discard(w, errors.New("found dead while idle"))
				continue
			}
			return w, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-closing.Done():
			return nil, errPoolClosed
		case <-p.closing:
			return nil, errPoolClosed
		}
	}
}

// release returns a healthy worker to the pool.
func (p *pool) release(w *proc) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		p.discard(w, errPoolClosed)
		return
	}
	p.idle <- w // never blocks: at most opts.Workers workers exist
}

// forget kills a worker, closes its events pipe (the caller holds it and
// reads it no more) and reports whether it was live (not yet forgotten) in
// an open pool.
func (p *pool) forget(w *proc) bool {
	w.kill()
	w.closeEvents()
	p.mu.Lock()
	defer p.mu.Unlock()
	_, live := p.procs[w]
	delete(p.procs, w)
	return live && !p.closed
}

// discard kills a worker and has the spawner start its replacement.
func (p *pool) discard(w *proc, why error) {
	if !p.forget(w) {
		return
	}
	p.log.Info().Int("pid", w.pid).AnErr("reason", why).Msg("wasmer worker discarded; starting another")
	select {
	case p.spawns <- struct{}{}:
	default: // cannot happen: one pending spawn per lost worker, at most Workers
	}
}

// close kills every worker and waits for the pool's goroutines.
func (p *pool) close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
	procs := make([]*proc, 0, len(p.procs))
	for w := range p.procs {
		procs = append(procs, w)
	}
	p.procs = map[*proc]struct{}{}
	p.mu.Unlock()
	for _, w := range procs {
		w.kill()
		w.closeEvents() // no run is left to read them: Engine.Close waited for them
	}
	done := make(chan struct{})
	go func() {
		<-p.spawnerd
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wasmer engine: waiting for the workers to exit: %w", ctx.Err())
	}
}
