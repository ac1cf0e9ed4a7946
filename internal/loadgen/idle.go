package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/chimera-fabric/fabric/internal/client"
)

// IdleReport is what the run's idle connections cost the server, per
// connection: the growth of its resident memory, Go heap and goroutines
// between before they opened and once the server counted them all.
type IdleReport struct {
	Connections       int     `json:"connections"`
	RSSBytesPerConn   float64 `json:"rss_bytes_per_conn"`
	HeapBytesPerConn  float64 `json:"heap_bytes_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// dialIdle opens cfg.IdleConnections connections that send nothing; they
// stay open for the run, so that its operations show what many open
// connections do to the latency of the work. The returned function closes
// them.
func (r *run) dialIdle(ctx context.Context) (*IdleReport, func(), error) {
	n := r.cfg.IdleConnections
	before := r.serverState(ctx)
	conns := make([]*client.Client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			conns[i], errs[i] = client.Dial(dctx, r.cfg.URL, client.Options{Token: r.cfg.Token, NotificationBuffer: 1})
		}()
	}
	wg.Wait()
	closeAll := func() {
		var wg sync.WaitGroup
		for _, c := range conns {
			if c != nil {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					c.Close()
				}()
			}
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("idle connection %d of %d: %w", i+1, n, err)
		}
	}
	rep := &IdleReport{Connections: n}
	if before == nil {
		return rep, closeAll, nil
	}
	// The server counts a connection once its session has started (a
	// session has at least two goroutines, a reader and a writer, for a
	// server that does not count them).
	var after *ServerState
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		after = r.serverState(ctx)
		if after == nil || after.Connections >= before.Connections+float64(n) ||
			after.Goroutines >= before.Goroutines+2*float64(n) {
			break
		}
	}
	if after != nil {
		rep.RSSBytesPerConn = (after.RSSBytes - before.RSSBytes) / float64(n)
		rep.HeapBytesPerConn = (after.HeapBytes - before.HeapBytes) / float64(n)
		rep.GoroutinesPerConn = (after.Goroutines - before.Goroutines) / float64(n)
	}
	return rep, closeAll, nil
}
