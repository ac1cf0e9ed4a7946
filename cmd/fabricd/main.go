// Command fabricd runs Fabric: tasks in sandboxed WebAssembly agents, driven
// over JSON-RPC 2.0 on a WebSocket (fabricd serve) or on stdin and stdout
// (fabricd stdio).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/internal/metrics"
	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/sched"
	"github.com/chimera-fabric/fabric/server"
	"github.com/chimera-fabric/fabric/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `fabricd runs tasks in sandboxed WebAssembly agents, driven over JSON-RPC 2.0.

Usage:
  fabricd serve [flags]   serve WebSocket JSON-RPC on --listen (GET /rpc), with /healthz, /readyz, /metrics
  fabricd stdio [flags]   speak the same API on stdin and stdout (logs on stderr)
  fabricd demo [flags]    run a short mixed workload through the real API, narrated
  fabricd version         print the version

Run 'fabricd serve -h' or 'fabricd stdio -h' for the flags. Every flag can also be
set as a FABRIC_* environment variable (FABRIC_DATA, FABRIC_TOKEN, ...) or in a
--config file; flags win over the environment, which wins over the file.
`

func main() {
	runPreMain()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve", "stdio":
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "fabricd %s (engines: %s)\n", version, strings.Join(engineNames(), ", "))
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fabricd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	mode := args[0]
	cfg, err := load(mode, args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "fabricd %s: %v\n", mode, err)
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, mode, cfg, log, stdin, stdout, nil); err != nil {
		log.Error().Err(err).Msg("fabricd stopped on an error")
		return 1
	}
	return 0
}

func newLogger(cfg config, w io.Writer) zerolog.Logger {
	level, _ := zerolog.ParseLevel(cfg.LogLevel)
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// serve runs fabricd until ctx is cancelled (a signal) or, for stdio, until
// stdin ends. listening, when not nil, is told the WebSocket address once the
// listener is bound (fabricd demo listens on 127.0.0.1:0).
func serve(ctx context.Context, mode string, cfg config, log zerolog.Logger, stdin io.Reader, stdout io.Writer, listening func(addr string)) error {
	if cfg.Pprof != "" {
		stop, err := servePprof(cfg.Pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	m := metrics.New()
	st, err := store.Open(ctx, cfg.Data, store.Options{Logger: log, OnCommit: m.StoreCommit})
	if err != nil {
		return fmt.Errorf("opening --data %s: %w", cfg.Data, err)
	}
	defer st.Close()

	cacheDir := ""
	if cfg.Data != ":memory:" {
		cacheDir = filepath.Join(cfg.Data, "compiled")
	}
	eng, err := newEngine(cfg.Engine, engineOptions{
		CacheDir:       cacheDir,
		MaxMemoryBytes: uint64(cfg.Limits.MaxMemoryMB) << 20,
		MaxModuleBytes: cfg.Limits.MaxModuleBytes,
		Workers:        cfg.Workers,
		FreshInstances: cfg.FreshInstances,
		Logger:         log,
	})
	if err != nil {
		return fmt.Errorf("--engine %s: %w", cfg.Engine, err)
	}
	defer eng.Close(context.Background())

	sc, err := sched.New(sched.Config{
		Metrics:   m,
		Store:     st,
		Engine:    eng,
		Workers:   cfg.Workers,
		MaxQueued: cfg.MaxQueued,
		Limits:    cfg.Limits,
		Logger:    log,
		Version:   version,
		Retention: sched.Retention{MaxAge: cfg.RetainFor, Keep: cfg.RetainKeep, Max: cfg.retainMax()},
	})
	if err != nil {
		return err
	}
	if err := sc.Start(ctx); err != nil {
		return err
	}
	m.Watch(metrics.Gauges{QueueDepth: sc.QueueDepth, Running: sc.Running, Workers: sc.Workers, Ready: sc.Ready})
	// However serve ends, running tasks are given the drain timeout and then
	// requeued durably.
	var stopOnce sync.Once
	stopSched := func() { stopOnce.Do(func() { drain(sc, cfg.DrainTimeout, log) }) }
	defer stopSched()
	if cfg.Agents != "" {
		if err := registerDir(ctx, sc, cfg.Agents, log); err != nil {
			return err
		}
	}

	srv := server.New(server.Config{
		Sched:          sc,
		Logger:         log,
		Token:          cfg.Token,
		AllowOrigins:   cfg.AllowOrigins,
		MaxInFlight:    cfg.MaxInFlight,
		MaxConnections: cfg.MaxConns,
		Metrics:        m.Handler(),
		Recorder:       m,
		Ready: func() (bool, string) {
			if sc.Ready() {
				return true, ""
			}
			return false, "draining: fabricd is shutting down"
		},
		// Room for the largest module as base64 in agent.register.
		MaxMessageBytes: server.DefaultMaxMessageBytes(cfg.Limits.MaxModuleBytes),
		Version:         version,
		StoreNeverWaits: storeNeverWaits(st),
	})

	if mode == "stdio" {
		log.Info().Str("data", cfg.Data).Str("engine", eng.Name()).Int("workers", cfg.Workers).Msg("fabricd serving JSON-RPC on stdin/stdout")
		err := srv.ServeStdio(ctx, stdin, stdout)
		sc.Drain()
		shutdownServer(srv, log)
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.Listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info().Str("listen", "ws://"+ln.Addr().String()+"/rpc").Str("data", cfg.Data).Str("engine", eng.Name()).
		Int("workers", cfg.Workers).Str("version", version).Msg("fabricd serving")
	if listening != nil {
		listening(ln.Addr().String())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP: %w", err)
	case <-ctx.Done():
	}
	log.Info().Dur("drain_timeout", cfg.DrainTimeout).Msg("signal received: draining (new tasks are refused with -32007)")
	sc.Drain()
	// Let running tasks finish while clients are still connected to hear
	// of it; then close the connections with 1001 going away.
	stopSched()
	shutdownServer(srv, log)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	hs.Shutdown(sctx)
	log.Info().Msg("fabricd stopped")
	return nil
}

// drain stops the scheduler: running tasks may finish within timeout, then
// they are stopped and requeued. A second SIGINT or SIGTERM cuts the wait.
func drain(sc *sched.Scheduler, timeout time.Duration, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hard := make(chan os.Signal, 1)
	signal.Notify(hard, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(hard)
	go func() {
		select {
		case <-hard:
			log.Warn().Msg("second signal: stopping running tasks now; they are requeued")
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := sc.Stop(ctx); err != nil {
		log.Warn().Err(err).Msg("drain timeout passed; running tasks were stopped and requeued")
	}
}

func shutdownServer(srv *server.Server, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("closing connections")
	}
}

// registerDir registers every *.wasm file in dir as an agent named after the
// file, replacing an older module of the same name.
func registerDir(ctx context.Context, sc *sched.Scheduler, dir string, log zerolog.Logger) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if err != nil {
		return fmt.Errorf("--agents %s: %w", dir, err)
	}
	if len(files) == 0 {
		return fmt.Errorf("--agents %s: no *.wasm files there (run 'make agents')", dir)
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--agents: %w", err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".wasm")
		p := &protocol.RegisterParams{Name: name, Wasm: b, Replace: true}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("--agents: %s: %w", f, err)
		}
		a, err := sc.RegisterAgent(ctx, p)
		if err != nil {
			return fmt.Errorf("--agents: registering %s: %w", f, err)
		}
		log.Info().Str("agent", a.Name).Str("abi", a.ABI).Msg("example agent ready")
	}
	return nil
}

// engineOptions are the options every engine takes.
type engineOptions struct {
	CacheDir       string
	MaxMemoryBytes uint64
	MaxModuleBytes int64
	Workers        int
	FreshInstances bool // wazero: no instance reset; wasmer ignores it (it always instantiates per task)
	Logger         zerolog.Logger
}

// engines maps --engine names to constructors; engines_wasmer.go adds wasmer
// when built with -tags wasmer.
var engines = map[string]func(engineOptions) (executor.Engine, error){
	"wazero": func(o engineOptions) (executor.Engine, error) {
		return executor.NewWazero(executor.WazeroOptions{
			CacheDir:       o.CacheDir,
			MaxMemoryBytes: o.MaxMemoryBytes,
			MaxModuleBytes: o.MaxModuleBytes,
			FreshInstances: o.FreshInstances,
			Logger:         o.Logger,
		})
	},
}

// preMain hooks run before anything else in main (the wasmer engine's worker
// processes are this binary re-executed).
var preMain []func()

func runPreMain() {
	for _, f := range preMain {
		f()
	}
}

func engineNames() []string {
	names := make([]string, 0, len(engines))
	for n := range engines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func newEngine(name string, o engineOptions) (executor.Engine, error) {
	mk, ok := engines[name]
	if !ok {
		return nil, fmt.Errorf("unknown engine %q", name)
	}
	return mk(o)
}

// storeNeverWaits: the in-memory store answers without I/O, so the server
// may run task.get and task.submit on a connection's reader.
func storeNeverWaits(st store.Store) bool {
	_, mem := st.(*store.Memory)
	return mem
}
