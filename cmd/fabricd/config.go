package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/chimera-fabric/fabric/sched"
)

// config is fabricd's configuration. Each field is set, in increasing order
// of precedence, from its default, the config file (--config), a FABRIC_*
// environment variable, and its flag; Validate checks the result.
type config struct {
	Listen       string
	Data         string
	Engine       string
	Workers      int
	Token        string
	Insecure     bool
	AllowOrigins []string
	MaxQueued    int
	DrainTimeout time.Duration
	LogFormat    string
	LogLevel     string
	Agents       string // a directory of *.wasm registered at start
	Limits       sched.Limits
	MaxInFlight  int
	MaxConns     int
	RetainFor    time.Duration
	RetainKeep   int
	// RetainMax caps the finished tasks kept (0: no cap); retainMaxAuto
	// (the default) is resolved by retainMax from --data.
	RetainMax      int
	FreshInstances bool
	Pprof          string // HOST:PORT of the profiler's listener; "" for none
}

func defaultConfig() config {
	return config{
		Listen:       "127.0.0.1:7420",
		Data:         "./fabric-data",
		Engine:       "wazero",
		Workers:      runtime.NumCPU(),
		MaxQueued:    100_000,
		DrainTimeout: 30 * time.Second,
		LogFormat:    "auto",
		LogLevel:     "info",
		Limits:       sched.DefaultLimits,
		MaxInFlight:  256,
		MaxConns:     16384,
		RetainFor:    7 * 24 * time.Hour,
		RetainKeep:   10_000,
		RetainMax:    retainMaxAuto,
	}
}

// --retain-max's defaults. A finished task holds about 1.4 KB of the
// in-memory store's heap (BenchmarkMemoryFinishedTaskBytes, a tiny task):
// 100,000 of them are about 150 MB, and a prune to the cap holds the queue
// for about 6ms. A durable store's disk is the operator's to size: its cap
// bounds growth at a rate no age limit can (10,000 tasks/s fill a week's
// --retain-for with 6 billion tasks).
const (
	retainMaxAuto   = -1
	retainMaxMemory = 100_000
	retainMaxDisk   = 10_000_000
)

// setting is one configurable value: its name (the flag's; the environment
// variable is FABRIC_ + upper case, '-' as '_'), its help, and how to set it
// from text.
type setting struct {
	name, help string
	boolean    bool // a flag that takes no value: --insecure
	set        func(string) error
	show       func() string
}

func (c *config) settings(mode string) []setting {
	str := func(p *string) (func(string) error, func() string) {
		return func(v string) error { *p = v; return nil }, func() string { return *p }
	}
	num := func(p *int) (func(string) error, func() string) {
		return func(v string) error {
				n, err := strconv.Atoi(v)
				if err != nil {
					return fmt.Errorf("want an integer; got %q", v)
				}
				*p = n
				return nil
			}, func() string {
				return strconv.Itoa(*p)
			}
	}
	num64 := func(p *int64) (func(string) error, func() string) {
		return func(v string) error {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return fmt.Errorf("want an integer; got %q", v)
				}
				*p = n
				return nil
			}, func() string {
				return strconv.FormatInt(*p, 10)
			}
	}
	dur := func(p *time.Duration) (func(string) error, func() string) {
		return func(v string) error {
				d, err := time.ParseDuration(v)
				if err != nil {
					return fmt.Errorf("want a duration such as 30s or 5m; got %q", v)
				}
				*p = d
				return nil
			}, func() string {
				return p.String()
			}
	}
	boolean := func(p *bool) (func(string) error, func() string) {
		return func(v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("want true or false; got %q", v)
				}
				*p = b
				return nil
			}, func() string {
				return strconv.FormatBool(*p)
			}
	}
	list := func(p *[]string) (func(string) error, func() string) {
		return func(v string) error {
				*p = nil
				for _, s := range strings.Split(v, ",") {
					if s = strings.TrimSpace(s); s != "" {
						*p = append(*p, s)
					}
				}
				return nil
			}, func() string {
				return strings.Join(*p, ",")
			}
	}
	mk := func(name, help string, f func(string) error, g func() string) setting {
		return setting{name: name, help: help, set: f, show: g}
	}
	var out []setting
	add := func(s setting) { out = append(out, s) }
	if mode == "serve" {
		f, g := str(&c.Listen)
		add(mk("listen", "HOST:PORT to serve WebSocket JSON-RPC on (GET /rpc), with /healthz, /readyz, /metrics", f, g))
		f, g = str(&c.Token)
		add(mk("token", "bearer token clients must present (also FABRIC_TOKEN)", f, g))
		b, bg := boolean(&c.Insecure)
		insecure := mk("insecure", "allow listening beyond loopback without a token", b, bg)
		insecure.boolean = true
		add(insecure)
		n, ng := num(&c.MaxConns)
		add(mk("max-connections", "open WebSocket connections before new ones are refused (503, -32002); 0: no limit", n, ng))
		l, lg := list(&c.AllowOrigins)
		add(mk("allow-origin", "comma-separated Origin patterns browsers may connect from", l, lg))
	}
	f, g := str(&c.Data)
	add(mk("data", "directory of the durable state, or :memory: to keep nothing", f, g))
	f, g = str(&c.Engine)
	add(mk("engine", "WebAssembly engine: "+strings.Join(engineNames(), " or "), f, g))
	n, ng := num(&c.MaxInFlight)
	add(mk("max-in-flight", "requests in flight per connection before -32002", n, ng))
	n, ng = num(&c.Workers)
	add(mk("workers", "tasks run at once", n, ng))
	n, ng = num(&c.MaxQueued)
	add(mk("max-queued", "queued and retrying tasks before task.submit answers -32002", n, ng))
	d, dg := dur(&c.DrainTimeout)
	add(mk("drain-timeout", "how long running tasks may finish after SIGTERM before they are requeued", d, dg))
	f, g = str(&c.LogFormat)
	add(mk("log-format", "json, console, or auto (console on a terminal)", f, g))
	f, g = str(&c.LogLevel)
	add(mk("log-level", "debug, info, warn or error", f, g))
	f, g = str(&c.Agents)
	add(mk("agents", "directory whose *.wasm files are registered at start, named after the file", f, g))
	i, ig := num64(&c.Limits.MaxModuleBytes)
	add(mk("max-module-bytes", "largest agent module accepted", i, ig))
	i, ig = num64(&c.Limits.MaxInputBytes)
	add(mk("max-input-bytes", "largest task input accepted", i, ig))
	i, ig = num64(&c.Limits.MaxMemoryMB)
	add(mk("max-memory-mb", "ceiling of a task's linear memory", i, ig))
	i, ig = num64(&c.Limits.DefaultMemoryMB)
	add(mk("default-memory-mb", "a task's linear memory when neither agent nor quota says", i, ig))
	d, dg = dur(&c.Limits.MaxTimeout)
	add(mk("max-timeout", "ceiling of a task's timeout", d, dg))
	d, dg = dur(&c.Limits.DefaultTimeout)
	add(mk("default-timeout", "a task's timeout when the submit gives none", d, dg))
	d, dg = dur(&c.RetainFor)
	add(mk("retain-for", "how long finished tasks are kept; tasks beyond the newest --retain-keep go when older than this (0 with --retain-keep 0: keep everything)", d, dg))
	n, ng = num(&c.RetainKeep)
	add(mk("retain-keep", "finished tasks always kept, newest first, whatever their age", n, ng))
	add(mk("retain-max", fmt.Sprintf("hard cap on finished tasks: those beyond the newest N go whatever their age, pruned in the background as the count passes it; 0: no cap; auto: %d with --data :memory:, %d with a directory (and at least --retain-keep)", retainMaxMemory, retainMaxDisk),
		func(v string) error {
			if v == "auto" {
				c.RetainMax = retainMaxAuto
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("want an integer or auto; got %q", v)
			}
			c.RetainMax = n
			return nil
		}, func() string {
			if c.RetainMax == retainMaxAuto {
				return "auto"
			}
			return strconv.Itoa(c.RetainMax)
		}))
	b, bg := boolean(&c.FreshInstances)
	fresh := mk("fresh-instances", "instantiate every task's module anew instead of resetting an eligible instance in place (docs/agents.md, Instance reset); the wazero engine only: wasmer always instantiates per task", b, bg)
	fresh.boolean = true
	add(fresh)
	f, g = str(&c.Pprof)
	add(mk("pprof", "HOST:PORT to serve Go's profiler on (/debug/pprof/, for go tool pprof), apart from the API; no token is checked, so loopback only unless --insecure; empty: off", f, g))
	return out
}

func envName(flagName string) string {
	return "FABRIC_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// load builds the configuration of a subcommand from its arguments and the
// environment.
func load(mode string, args []string, getenv func(string) string) (config, error) {
	c := defaultConfig()
	ss := c.settings(mode)
	fs := flag.NewFlagSet("fabricd "+mode, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	var configFile string
	fs.StringVar(&configFile, "config", getenv("FABRIC_CONFIG"), "optional config file: lines of name = value, names as the flags'")
	// Flags are validated as parsed, and kept to be applied last.
	type flagValue struct{ name, value string }
	var given []flagValue
	for _, s := range ss {
		s := s
		help := s.help + " [" + envName(s.name) + "] (default " + orNone(s.show()) + ")"
		set := func(v string) error {
			if err := s.set(v); err != nil {
				return err
			}
			given = append(given, flagValue{s.name, v})
			return nil
		}
		if s.boolean {
			fs.BoolFunc(s.name, help, set)
		} else {
			fs.Func(s.name, help, set)
		}
	}
	// Parse once to find --config, then apply file, environment and flags
	// in order of precedence.
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c = defaultConfig()
	ss = c.settings(mode)
	byName := map[string]setting{}
	for _, s := range ss {
		byName[s.name] = s
	}
	if configFile != "" {
		if err := applyFile(configFile, byName); err != nil {
			return c, err
		}
	}
	for _, s := range ss {
		if v := getenv(envName(s.name)); v != "" {
			if err := s.set(v); err != nil {
				return c, fmt.Errorf("%s: %v", envName(s.name), err)
			}
		}
	}
	for _, f := range given {
		if err := byName[f.name].set(f.value); err != nil {
			return c, fmt.Errorf("--%s: %v", f.name, err)
		}
	}
	return c, c.Validate(mode)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func applyFile(path string, byName map[string]setting) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want name = value; got %q", path, i+1, line)
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		s, ok := byName[name]
		if !ok {
			return fmt.Errorf("%s:%d: unknown setting %q", path, i+1, name)
		}
		if err := s.set(value); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, i+1, name, err)
		}
	}
	return nil
}

// retainMax is --retain-max with auto resolved: by --data, and at least
// --retain-keep.
func (c *config) retainMax() int {
	if c.RetainMax != retainMaxAuto {
		return c.RetainMax
	}
	if c.Data == ":memory:" {
		return max(retainMaxMemory, c.RetainKeep)
	}
	return max(retainMaxDisk, c.RetainKeep)
}

// Validate checks the configuration; each message names the setting.
func (c *config) Validate(mode string) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: "+format, append([]any{name}, args...)...))
	}
	if mode == "serve" {
		host, _, err := net.SplitHostPort(c.Listen)
		if err != nil {
			bad("listen", "want HOST:PORT; got %q", c.Listen)
		} else if c.Token == "" && !c.Insecure && !loopback(host) {
			bad("listen", "%s is reachable beyond this machine and no --token is set; set --token (or FABRIC_TOKEN), or --insecure to allow it", c.Listen)
		}
	}
	if c.Pprof != "" {
		host, _, err := net.SplitHostPort(c.Pprof)
		if err != nil {
			bad("pprof", "want HOST:PORT, such as 127.0.0.1:6060; got %q", c.Pprof)
		} else if !c.Insecure && !loopback(host) {
			bad("pprof", "%s is reachable beyond this machine, and the profiler checks no token (it shows the process's memory and stacks); use a loopback address such as 127.0.0.1:6060, or --insecure (fabricd serve) to allow it", c.Pprof)
		}
	}
	if c.MaxConns < 0 {
		bad("max-connections", "want >= 0; got %d", c.MaxConns)
	}
	if c.MaxInFlight < 1 {
		bad("max-in-flight", "want >= 1; got %d", c.MaxInFlight)
	}
	if c.Data == "" {
		bad("data", "want a directory or :memory:")
	}
	if !contains(engineNames(), c.Engine) {
		if c.Engine == "wasmer" {
			bad("engine", "this fabricd was built without the wasmer engine; build it with -tags wasmer")
		} else {
			bad("engine", "want one of %s; got %q", strings.Join(engineNames(), ", "), c.Engine)
		}
	}
	if c.Workers < 1 || c.Workers > 4096 {
		bad("workers", "want 1..4096; got %d", c.Workers)
	}
	if c.MaxQueued < 1 {
		bad("max-queued", "want >= 1; got %d", c.MaxQueued)
	}
	if c.DrainTimeout < 0 {
		bad("drain-timeout", "want >= 0; got %s", c.DrainTimeout)
	}
	if !contains([]string{"auto", "json", "console"}, c.LogFormat) {
		bad("log-format", "want auto, json or console; got %q", c.LogFormat)
	}
	if !contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		bad("log-level", "want debug, info, warn or error; got %q", c.LogLevel)
	}
	l := c.Limits
	if l.MaxModuleBytes < 8 {
		bad("max-module-bytes", "want >= 8 (a module's header alone is 8 bytes); got %d", l.MaxModuleBytes)
	}
	if l.MaxInputBytes < 0 {
		bad("max-input-bytes", "want >= 0; got %d", l.MaxInputBytes)
	}
	if l.MaxMemoryMB < 1 || l.MaxMemoryMB > 4096 {
		bad("max-memory-mb", "want 1..4096 (wasm32 addresses 4 GiB); got %d", l.MaxMemoryMB)
	}
	if l.DefaultMemoryMB < 1 || l.DefaultMemoryMB > l.MaxMemoryMB {
		bad("default-memory-mb", "want 1..max-memory-mb (%d); got %d", l.MaxMemoryMB, l.DefaultMemoryMB)
	}
	if l.MaxTimeout < time.Millisecond {
		bad("max-timeout", "want >= 1ms; got %s", l.MaxTimeout)
	}
	if l.DefaultTimeout < time.Millisecond || l.DefaultTimeout > l.MaxTimeout {
		bad("default-timeout", "want 1ms..max-timeout (%s); got %s", l.MaxTimeout, l.DefaultTimeout)
	}
	if c.RetainFor < 0 {
		bad("retain-for", "want >= 0; got %s", c.RetainFor)
	}
	if c.RetainKeep < 0 {
		bad("retain-keep", "want >= 0; got %d", c.RetainKeep)
	}
	switch {
	case c.RetainMax == retainMaxAuto:
	case c.RetainMax < 0:
		bad("retain-max", "want >= 0 or auto; got %d", c.RetainMax)
	case c.RetainMax > 0 && c.RetainMax < c.RetainKeep:
		bad("retain-max", "%d is below --retain-keep (%d): the cap would remove tasks --retain-keep keeps; raise --retain-max, lower --retain-keep, or use --retain-max 0 for no cap", c.RetainMax, c.RetainKeep)
	}
	return errors.Join(errs...)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
