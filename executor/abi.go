package executor

import (
	"github.com/chimera-fabric/fabric/protocol"
)

// Host module names of GUEST_ABI.md.
const (
	FabricModule = "fabric"
	WASIModule   = "wasi_snapshot_preview1"
)

// HostFunction is a host function a guest may import.
type HostFunction struct {
	Name string
	Type Signature
}

// FabricFunctions are the functions of the fabric host module (GUEST_ABI.md).
var FabricFunctions = []HostFunction{
	{"input_len", Sig(nil, I32)},
	{"input_read", Sig([]ValType{I32})},
	{"output_write", Sig([]ValType{I32, I32})},
	{"error_write", Sig([]ValType{I32, I32})},
	{"log", Sig([]ValType{I32, I32, I32})},
	{"progress", Sig([]ValType{I32})},
	{"kpi", Sig([]ValType{I32, I32, F64})},
}

// Entry types and defaults.
var (
	wasiEntryType   = Sig(nil)
	fabricEntryType = Sig(nil, I32)
)

// Default entries of the two ABIs.
const (
	DefaultWasiEntry   = "_start"
	DefaultFabricEntry = "run"
	InitializeExport   = "_initialize"
	MemoryExport       = "memory"
)

// CheckedModule is what CheckModule decided about a module.
type CheckedModule struct {
	ABI   string
	Entry string
	// Initialize says a fabric-v1 module exports _initialize, to be run
	// before the entry.
	Initialize bool
	// InitialMemoryBytes is the initial size of its linear memory.
	InitialMemoryBytes uint64
}

// CheckModule applies the guest ABI's rules to an inspected module, so that
// every engine refuses the same modules with the same reasons:
//   - every import is a fabric function of GUEST_ABI.md or one of wasi (the
//     engine's wasi_snapshot_preview1 functions), with the exact type;
//   - the ABI is spec.ABI, or detected: wasi-command when the module exports
//     _start (and spec.Entry is empty or "_start"), fabric-v1 otherwise;
//   - a wasi-command entry (default _start) has type () -> (); a fabric-v1
//     module exports its memory as "memory" and an entry (default run) of
//     type () -> (i32), and _initialize, if exported, has type () -> ();
//   - its declared initial memory is at most maxMemoryBytes;
//   - spec.ReuseInstances is for fabric-v1 modules only (an error wrapping
//     protocol.ErrInvalidParams that names reuse_instances).
//
// Its other errors wrap protocol.ErrInvalidModule.
func CheckModule(info *ModuleInfo, spec ModuleSpec, wasi map[string]Signature, maxMemoryBytes uint64) (CheckedModule, error) {
	for _, im := range info.Imports {
		if err := checkImport(im, wasi); err != nil {
			return CheckedModule{}, err
		}
	}

	c := CheckedModule{ABI: spec.ABI, Entry: spec.Entry, InitialMemoryBytes: info.InitialMemoryBytes()}
	_, hasStart := info.ExportedFunc(DefaultWasiEntry)
	switch c.ABI {
	case "":
		if hasStart && (c.Entry == "" || c.Entry == DefaultWasiEntry) {
			c.ABI = protocol.ABIWasiCommand
			break
		}
		c.ABI = protocol.ABIFabricV1
		if c.Entry == "" {
			_, hasRun := info.ExportedFunc(DefaultFabricEntry)
			if !hasRun || !info.ExportsName(MemoryExport, KindMemory) {
				return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
					"no ABI detected: want a _start export (wasi-command) or exports memory and run () -> (i32) (fabric-v1)")
			}
		}
	case protocol.ABIWasiCommand, protocol.ABIFabricV1:
	default:
		return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
			"abi: want %s or %s; got %q", protocol.ABIWasiCommand, protocol.ABIFabricV1, c.ABI)
	}

	want := wasiEntryType
	if c.ABI == protocol.ABIFabricV1 {
		want = fabricEntryType
		if !info.ExportsName(MemoryExport, KindMemory) {
			return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
				"fabric-v1 module must export its linear memory as %q", MemoryExport)
		}
		if t, ok := info.ExportedFunc(InitializeExport); ok {
			if !t.Equal(wasiEntryType) {
				return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
					"export %s has type %s; want %s", InitializeExport, t, wasiEntryType)
			}
			c.Initialize = true
		}
		if c.Entry == "" {
			c.Entry = DefaultFabricEntry
		}
	} else if c.Entry == "" {
		c.Entry = DefaultWasiEntry
	}
	t, ok := info.ExportedFunc(c.Entry)
	if !ok {
		return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
			"entry %q is not an exported function (%s wants %s %s)", c.Entry, c.ABI, c.Entry, want)
	}
	if !t.Equal(want) {
		return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
			"entry %q has type %s; %s wants %s", c.Entry, t, c.ABI, want)
	}

	if spec.ReuseInstances && c.ABI != protocol.ABIFabricV1 {
		return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidParams,
			"reuse_instances: want a %s module; this one is %s, whose %s runs once per instance",
			protocol.ABIFabricV1, c.ABI, c.Entry)
	}
	if c.InitialMemoryBytes > maxMemoryBytes {
		return CheckedModule{}, protocol.Errorf(protocol.ErrInvalidModule,
			"declares %d bytes (%d pages) of initial linear memory; the server's ceiling is %d bytes",
			c.InitialMemoryBytes, c.InitialMemoryBytes/WasmPageSize, maxMemoryBytes)
	}
	return c, nil
}

func checkImport(im Import, wasi map[string]Signature) error {
	if im.Kind != KindFunc {
		return protocol.Errorf(protocol.ErrInvalidModule,
			"imports %s.%s (a %s): not part of the guest ABI; a guest imports only functions and defines its own memory",
			im.Module, im.Name, im.Kind)
	}
	var want Signature
	found := false
	switch im.Module {
	case FabricModule:
		for _, f := range FabricFunctions {
			if f.Name == im.Name {
				want, found = f.Type, true
				break
			}
		}
	case WASIModule:
		want, found = wasi[im.Name]
	}
	if !found {
		return protocol.Errorf(protocol.ErrInvalidModule,
			"imports %s.%s: not part of the guest ABI (a guest may import the fabric functions of GUEST_ABI.md and %s)",
			im.Module, im.Name, WASIModule)
	}
	if !im.Type.Equal(want) {
		return protocol.Errorf(protocol.ErrInvalidModule,
			"imports %s.%s with type %s; want %s", im.Module, im.Name, im.Type, want)
	}
	return nil
}

// inspectError turns an InspectModule failure into ErrInvalidModule.
func inspectError(err error) error {
	return protocol.Errorf(protocol.ErrInvalidModule, "%v", err)
}
