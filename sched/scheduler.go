package sched

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

// Scheduler accepts, queues, runs and reports tasks. The queue itself lives in
// the store: workers claim work through it, so that what the store holds is
// always the truth and a crash loses nothing the store acknowledged.
type Scheduler struct {
	cfg Config
	st  store.Store
	eng executor.Engine
	log zerolog.Logger
	now func() time.Time

	started time.Time
	bus     bus
	kpi     *kpiWindow

	regMu  sync.Mutex // serialises agent registration and removal
	mu     sync.Mutex // guards the fields below
	agents map[string]*agentEntry
	run    map[string]*runningTask // task id → its run
	cancel map[string]bool         // cancels asked for before the run registered
	wait   map[string][]*waiter
	// unfinished holds the tasks this process accepted whose terminal
	// state is not announced yet: a task.wait for one of them needs no read
	// of the store, since its end is announced with the record (wakeWaiters).
	unfinished map[string]struct{}
	// publishing holds, per task, an event on its way to the subscribers
	// that the task's next event must follow: a task can be claimed (and
	// its claim committed) before the event that made it waiting is
	// published (holdEvents).
	publishing map[string]chan struct{}
	recent     *recent // tasks that ended lately, as committed

	doneSincePrune atomic.Int64  // tasks finished since the last prune began
	pruneSoon      chan struct{} // wakes pruneLoop once Retention.Max may be passed
	state          lifeState

	depth [protocol.Critical + 1]atomic.Int64 // queued + retrying, by priority

	wake     chan struct{}
	stopping chan struct{} // closed by Stop: workers stop claiming
	runCtx   context.Context
	stopRuns context.CancelCauseFunc // cancels running guests at the end of Stop
	wg       sync.WaitGroup

	lastStoreErr atomic.Int64 // unix nanos of the last store failure on the hot path

	rngMu sync.Mutex
	rng   *rand.Rand
}

type lifeState int

const (
	stateNew lifeState = iota
	stateRunning
	stateDraining
	stateStopped
)

var (
	errShutdown = errors.New("fabric is shutting down")
	errCancel   = errors.New("task cancelled")
)

// Subscription is a live feed of task events; Close ends it.
type Subscription struct {
	close func()
}

// Close ends the subscription; no event is delivered after it returns.
func (s *Subscription) Close() {
	if s != nil && s.close != nil {
		s.close()
	}
}

// New returns a Scheduler; Start starts it.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Store == nil {
		return nil, errors.New("sched: Config.Store is required")
	}
	if cfg.Engine == nil {
		return nil, errors.New("sched: Config.Engine is required")
	}
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("sched: workers: want >= 1; got %d", cfg.Workers)
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 100_000
	}
	if cfg.MaxQueued < 0 {
		return nil, fmt.Errorf("sched: max queued: want >= 1; got %d", cfg.MaxQueued)
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits
	}
	if cfg.KPIWindow == 0 {
		cfg.KPIWindow = time.Minute
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 100 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Scheduler{
		cfg:        cfg,
		st:         cfg.Store,
		eng:        cfg.Engine,
		log:        cfg.Logger,
		now:        cfg.Now,
		kpi:        newKPIWindow(cfg.KPIWindow),
		agents:     map[string]*agentEntry{},
		run:        map[string]*runningTask{},
		cancel:     map[string]bool{},
		wait:       map[string][]*waiter{},
		unfinished: map[string]struct{}{},
		publishing: map[string]chan struct{}{},
		recent:     newRecent(),
		pruneSoon:  make(chan struct{}, 1),
		wake:       make(chan struct{}, cfg.Workers),
		stopping:   make(chan struct{}),
		rng:        rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)),
	}
	// A store that can tell when a task becomes claimable, before its
	// creation commits, wakes a worker then: the task runs while the
	// creation's transaction is open, and its outcome can commit with it.
	if r, ok := cfg.Store.(interface{ OnReady(func()) }); ok {
		r.OnReady(s.poke)
	}
	s.bus.subs = map[*subscriber]struct{}{}
	s.bus.byTask = map[string]map[*subscriber]struct{}{}
	s.runCtx, s.stopRuns = context.WithCancelCause(context.Background())
	return s, nil
}

// Start recovers the store's state, loads agents and starts the workers.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return errors.New("sched: already started")
	}
	s.mu.Unlock()

	s.started = s.now()
	requeued, err := s.st.Recover(ctx, s.now())
	if err != nil {
		return fmt.Errorf("recovering tasks left running: %w", err)
	}
	if len(requeued) > 0 {
		s.log.Warn().Int("tasks", len(requeued)).Msg("requeued tasks that were running when the last process stopped")
	}
	if err := s.loadAgents(ctx); err != nil {
		return err
	}
	depth, err := s.st.QueueDepth(ctx)
	if err != nil {
		return fmt.Errorf("reading queue depth: %w", err)
	}
	for p, n := range depth {
		s.depth[p].Store(int64(n))
	}

	s.mu.Lock()
	s.state = stateRunning
	s.mu.Unlock()
	for i := 0; i < s.cfg.Workers; i++ {
		s.wg.Add(1)
		go s.worker(i)
	}
	s.wg.Add(1)
	go s.progressLoop()
	if r := s.cfg.Retention; r.Keep > 0 || r.MaxAge > 0 || r.Max > 0 {
		s.wg.Add(1)
		go s.pruneLoop()
	}
	s.poke()
	return nil
}

// Drain stops accepting tasks: task.submit answers -32007 from now on, and
// system.health says "draining". Running and queued tasks are untouched.
func (s *Scheduler) Drain() {
	s.mu.Lock()
	if s.state == stateRunning || s.state == stateNew {
		s.state = stateDraining
	}
	s.mu.Unlock()
}

// Stop stops the workers. Running tasks may finish until ctx is done; then
// their guests are stopped and the tasks go back to the queue durably, to run
// again at the next start. Stop is idempotent and implies Drain.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.state == stateStopped {
		s.mu.Unlock()
		return nil
	}
	s.state = stateStopped
	s.mu.Unlock()
	close(s.stopping)

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.stopRuns(errShutdown)
		<-done
		err = ctx.Err()
	}
	s.stopRuns(errShutdown)

	s.mu.Lock()
	agents := s.agents
	s.agents = map[string]*agentEntry{}
	s.mu.Unlock()
	for _, a := range agents {
		s.retire(a)
	}
	return err
}

// poke wakes one idle worker, if any.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) accepting() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateRunning:
		return nil
	case stateNew:
		return protocol.Errorf(protocol.ErrShuttingDown, "the scheduler has not started")
	}
	return protocol.Errorf(protocol.ErrShuttingDown, "fabricd is shutting down and accepts no new tasks")
}

func (s *Scheduler) storeFailed(err error) {
	s.lastStoreErr.Store(s.now().UnixNano())
	s.log.Error().Err(err).Msg("store operation failed")
}

func (s *Scheduler) uniform() float64 {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}

// logFor is the logger of a request: the one its context carries (with the
// connection and request id), else the scheduler's.
func (s *Scheduler) logFor(ctx context.Context) *zerolog.Logger {
	if l := zerolog.Ctx(ctx); l.GetLevel() != zerolog.Disabled {
		return l
	}
	return &s.log
}
