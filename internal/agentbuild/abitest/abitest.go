// Package abitest runs agent modules under a small host of GUEST_ABI.md, so
// that the guest side (the guest SDK and the example agents) can be tested
// as WebAssembly without the executor.
//
// It is the reference reading of the ABI from the guest's point of view,
// not the fabric's executor: it enforces no limits and grants no
// capabilities (wazero's defaults: a fake clock and a deterministic random
// source). It records everything the guest sends through the fabric
// imports, and stdin, stdout and stderr for wasi-command modules. A module
// that imports anything but wasi_snapshot_preview1 and the seven fabric
// functions is refused, as the fabric refuses it.
package abitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Import names a function a module imports.
type Import struct{ Module, Name string }

func (i Import) String() string { return i.Module + "." + i.Name }

// Signature is a function type, as wazero spells its value types.
type Signature struct {
	Params, Results []api.ValueType
}

func (s Signature) String() string {
	names := func(ts []api.ValueType) string {
		n := make([]string, len(ts))
		for i, t := range ts {
			n[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(n, ", ") + ")"
	}
	return names(s.Params) + " -> " + names(s.Results)
}

// FabricImports are the host functions of the fabric module and their
// types, as GUEST_ABI.md lists them.
var FabricImports = map[string]Signature{
	"input_len":    {nil, []api.ValueType{api.ValueTypeI32}},
	"input_read":   {[]api.ValueType{api.ValueTypeI32}, nil},
	"output_write": {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil},
	"error_write":  {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil},
	"log":          {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, nil},
	"progress":     {[]api.ValueType{api.ValueTypeI32}, nil},
	"kpi":          {[]api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeF64}, nil},
}

// LogLine is one call of fabric.log.
type LogLine struct {
	Level int32
	Msg   string
}

// Result is what one run of a module did.
type Result struct {
	Output   []byte // from fabric.output_write
	Failed   bool   // fabric.error_write was called
	Error    string // its last message
	Logs     []LogLine
	Progress []int32 // permille values, in order
	KPIs     map[string]float64
	// Stdout and Stderr are the WASI streams.
	Stdout, Stderr []byte
	// ExitCode is the status a wasi-command exited with (0 when _start
	// returned); for a fabric-v1 entry, the i32 it returned.
	ExitCode uint32
}

// Host compiles and runs modules. It is safe for concurrent use.
type Host struct {
	rt wazero.Runtime
}

// New starts a host; Close releases it. Compiled code is cached in
// cacheDir when it is not empty, so that later test runs skip compiling
// the same modules again (wazero writes its cache files atomically).
func New(ctx context.Context, cacheDir string) (*Host, error) {
	cfg := wazero.NewRuntimeConfig()
	if cacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cacheDir)
		if err != nil {
			return nil, err
		}
		cfg = cfg.WithCompilationCache(cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	b := rt.NewHostModuleBuilder("fabric")
	for name, fn := range hostFuncs {
		sig := FabricImports[name]
		b.NewFunctionBuilder().WithGoModuleFunction(fn, sig.Params, sig.Results).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	return &Host{rt: rt}, nil
}

// Close releases the host and every module it compiled.
func (h *Host) Close(ctx context.Context) error { return h.rt.Close(ctx) }

// Module is a compiled agent.
type Module struct {
	h        *Host
	compiled wazero.CompiledModule
	// Command is true for a wasi-command (exports _start), false for a
	// fabric-v1 module.
	Command bool
}

// Imports lists the functions a module imports, in order.
func Imports(c wazero.CompiledModule) []Import {
	var out []Import
	for _, f := range c.ImportedFunctions() {
		m, n, _ := f.Import()
		out = append(out, Import{m, n})
	}
	return out
}

// Inspect lists the functions wasm imports, in order, and the names it
// exports (functions and memories), sorted. It only decodes and validates
// the module (with wazero's interpreter, which compiles nothing ahead), and
// checks nothing against the ABI.
func Inspect(ctx context.Context, wasm []byte) ([]Import, []string, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	c, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, nil, err
	}
	return Imports(c), exports(c), nil
}

func exports(c wazero.CompiledModule) []string {
	var names []string
	for name := range c.ExportedFunctions() {
		names = append(names, name)
	}
	for name := range c.ExportedMemories() {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Imports lists the functions m imports, in order.
func (m *Module) Imports() []Import { return Imports(m.compiled) }

// Exports lists the names m exports (functions and memories), sorted.
func (m *Module) Exports() []string { return exports(m.compiled) }

// Compile compiles wasm and checks it against the ABI: only WASI and fabric
// imports, fabric imports of the listed types, and either _start or memory
// and run exported.
func (h *Host) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	c, err := h.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, err
	}
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
			continue
		case "fabric":
			sig, ok := FabricImports[name]
			if !ok {
				c.Close(ctx)
				return nil, fmt.Errorf("import fabric.%s: not a fabric function", name)
			}
			if !sameTypes(sig.Params, f.ParamTypes()) || !sameTypes(sig.Results, f.ResultTypes()) {
				c.Close(ctx)
				return nil, fmt.Errorf("import fabric.%s: want type %s; got %s",
					name, sig, Signature{f.ParamTypes(), f.ResultTypes()})
			}
		default:
			c.Close(ctx)
			return nil, fmt.Errorf("import %s.%s: not offered to agents", mod, name)
		}
	}
	exports := c.ExportedFunctions()
	if _, ok := exports["_start"]; ok {
		return &Module{h: h, compiled: c, Command: true}, nil
	}
	run, ok := exports["run"]
	if !ok {
		c.Close(ctx)
		return nil, errors.New("exports: want _start (wasi-command) or run (fabric-v1); got neither")
	}
	if len(run.ParamTypes()) != 0 || !sameTypes(run.ResultTypes(), []api.ValueType{api.ValueTypeI32}) {
		c.Close(ctx)
		return nil, fmt.Errorf("export run: want type () -> (i32); got %s", Signature{run.ParamTypes(), run.ResultTypes()})
	}
	if _, ok := c.ExportedMemories()["memory"]; !ok {
		c.Close(ctx)
		return nil, errors.New("exports: a fabric-v1 module must export its memory as \"memory\"")
	}
	return &Module{h: h, compiled: c}, nil
}

func sameTypes(a, b []api.ValueType) bool { return bytes.Equal(a, b) }

// Run runs one task in a fresh instance: _start for a wasi-command, else
// _initialize (when exported) and then run. A trap is returned as an
// error; a non-zero exit status is not an error but Result.ExitCode.
func (m *Module) Run(ctx context.Context, input []byte) (*Result, error) {
	st := &state{input: input, res: Result{KPIs: map[string]float64{}}}
	ctx = context.WithValue(ctx, stateKey{}, st)
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdin(bytes.NewReader(input)).
		WithStdout(&stdout).
		WithStderr(&stderr).
		WithArgs("agent")
	mod, err := m.h.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		return nil, err
	}
	defer mod.Close(ctx)

	call := func(name string) ([]uint64, error) {
		f := mod.ExportedFunction(name)
		if f == nil {
			return nil, nil
		}
		return f.Call(ctx)
	}
	var ret []uint64
	if m.Command {
		_, err = call("_start")
	} else if _, err = call("_initialize"); err == nil {
		ret, err = call("run")
	}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit):
		st.res.ExitCode = exit.ExitCode()
	case err != nil:
		return nil, err
	case len(ret) == 1:
		st.res.ExitCode = uint32(api.DecodeI32(ret[0]))
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	res := st.res
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	return &res, nil
}

// Close releases the compiled module.
func (m *Module) Close(ctx context.Context) error { return m.compiled.Close(ctx) }

type stateKey struct{}

type state struct {
	input []byte
	mu    sync.Mutex
	res   Result
}

func stateOf(ctx context.Context) *state { return ctx.Value(stateKey{}).(*state) }

// read returns a copy of guest memory [ptr, ptr+n), panicking (which wazero
// turns into a trap) when it is out of bounds.
func read(mod api.Module, ptr, n uint32) []byte {
	b, ok := mod.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Errorf("guest memory [%d, %d) out of bounds (size %d)", ptr, uint64(ptr)+uint64(n), mod.Memory().Size()))
	}
	return bytes.Clone(b)
}

var hostFuncs = map[string]api.GoModuleFunc{
	"input_len": func(ctx context.Context, _ api.Module, stack []uint64) {
		stack[0] = api.EncodeU32(uint32(len(stateOf(ctx).input)))
	},
	"input_read": func(ctx context.Context, mod api.Module, stack []uint64) {
		in := stateOf(ctx).input
		if !mod.Memory().Write(api.DecodeU32(stack[0]), in) {
			panic(fmt.Errorf("input_read: %d bytes at %d out of bounds", len(in), api.DecodeU32(stack[0])))
		}
	},
	"output_write": func(ctx context.Context, mod api.Module, stack []uint64) {
		b := read(mod, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		st := stateOf(ctx)
		st.mu.Lock()
		st.res.Output = append(st.res.Output, b...)
		st.mu.Unlock()
	},
	"error_write": func(ctx context.Context, mod api.Module, stack []uint64) {
		b := read(mod, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		st := stateOf(ctx)
		st.mu.Lock()
		st.res.Failed, st.res.Error = true, string(b)
		st.mu.Unlock()
	},
	"log": func(ctx context.Context, mod api.Module, stack []uint64) {
		b := read(mod, api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
		st := stateOf(ctx)
		st.mu.Lock()
		st.res.Logs = append(st.res.Logs, LogLine{Level: api.DecodeI32(stack[0]), Msg: string(b)})
		st.mu.Unlock()
	},
	"progress": func(ctx context.Context, _ api.Module, stack []uint64) {
		st := stateOf(ctx)
		st.mu.Lock()
		st.res.Progress = append(st.res.Progress, api.DecodeI32(stack[0]))
		st.mu.Unlock()
	},
	"kpi": func(ctx context.Context, mod api.Module, stack []uint64) {
		name := read(mod, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
		v := api.DecodeF64(stack[2])
		st := stateOf(ctx)
		st.mu.Lock()
		st.res.KPIs[string(name)] = v
		st.mu.Unlock()
	},
}
