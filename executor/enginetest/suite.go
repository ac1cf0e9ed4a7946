package enginetest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chimera-fabric/fabric/executor"
	"github.com/chimera-fabric/fabric/protocol"
)

// Run runs the conformance suite against one engine, made by newEngine. The
// engine's memory ceiling must be at least 64 MiB and below 4 GiB (hugemem
// declares 4 GiB). The suite closes the engine when it is done; Close must
// therefore be harmless to call twice, should newEngine's own cleanup close
// it too. Some cases make a second engine to close it under a running guest.
//
// What the suite holds every engine to is the sandbox contract of
// GUEST_ABI.md and executor.RunState, case by case; testdata/agents/README.md
// lists each agent with its expected outcome.
func Run(t *testing.T, newEngine func(t *testing.T) executor.Engine) {
	eng := newEngine(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := eng.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	s := &suite{eng: eng}
	s.health = s.compile(t, "echo_fabric", executor.ModuleSpec{})

	t.Run("Compile", s.testCompile)
	t.Run("Refuse", s.testRefuse)
	t.Run("Echo", s.testEcho)
	t.Run("Fabric", s.testFabric)
	t.Run("Failures", s.testFailures)
	t.Run("Limits", s.testLimits)
	t.Run("Time", s.testTime)
	t.Run("WASI", s.testWASI)
	t.Run("Capabilities", s.testCapabilities)
	t.Run("HostPointers", s.testHostPointers)
	t.Run("HostPanic", s.testHostPanic)
	t.Run("Usage", s.testUsage)
	t.Run("Isolation", s.testIsolation)
	t.Run("Reuse", s.testReuse)
	t.Run("ModuleClose", s.testModuleClose)
	t.Run("EngineClose", func(t *testing.T) { testEngineClose(t, newEngine) })
}

type suite struct {
	eng executor.Engine
	// health is run after every hostile case: the engine must go on serving.
	health executor.Module
}

// inv is the invocation every case starts from: generous limits that the
// well-behaved agents stay far below.
func inv(input string) executor.Invocation {
	return executor.Invocation{
		TaskID:           "task",
		Input:            []byte(input),
		Timeout:          20 * time.Second,
		MemoryLimitBytes: 64 << 20,
		OutputLimitBytes: 1 << 20,
		LogLimitBytes:    64 << 10,
		Seed:             1,
	}
}

// compile compiles a test agent; the module is closed at the test's end.
func (s *suite) compile(t testing.TB, agent string, spec executor.ModuleSpec) executor.Module {
	t.Helper()
	if spec.Name == "" {
		spec.Name = strings.ReplaceAll(agent, "_", "-")
	}
	spec.Wasm = Agent(t, agent)
	m, err := s.eng.Compile(context.Background(), spec)
	if err != nil {
		t.Fatalf("Compile(%s): %v", agent, err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// run runs a module with inv and checks the engine's promise never to
// leave an outcome half-made.
func run(t testing.TB, m executor.Module, in executor.Invocation) executor.Outcome {
	t.Helper()
	return runCtx(context.Background(), t, m, in)
}

func runCtx(ctx context.Context, t testing.TB, m executor.Module, in executor.Invocation) executor.Outcome {
	t.Helper()
	out := m.Run(ctx, in)
	if out.Err != nil {
		if out.Err.Code == "" || out.Err.Message == "" {
			t.Errorf("outcome error without code or message: %+v", out.Err)
		}
		if out.Err.Retryable != protocol.Retryable(out.Err.Code) {
			t.Errorf("outcome error %s: retryable %v; want %v", out.Err.Code, out.Err.Retryable, protocol.Retryable(out.Err.Code))
		}
	}
	return out
}

// wantOK fails unless out succeeded with the given output.
func wantOK(t testing.TB, out executor.Outcome, output string) {
	t.Helper()
	if out.Err != nil {
		t.Fatalf("outcome: %s: %s; want success", out.Err.Code, out.Err.Message)
	}
	if !bytes.Equal(out.Output, []byte(output)) {
		t.Fatalf("output %q; want %q", truncate(out.Output), truncate([]byte(output)))
	}
}

// wantErr fails unless out failed with code and a message containing each
// of parts.
func wantErr(t testing.TB, out executor.Outcome, code string, parts ...string) {
	t.Helper()
	if out.Err == nil {
		t.Fatalf("outcome: success with output %q; want %s", truncate(out.Output), code)
	}
	if out.Err.Code != code {
		t.Fatalf("outcome: %s: %s; want %s", out.Err.Code, out.Err.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(out.Err.Message, p) {
			t.Fatalf("outcome %s message %q; want it to contain %q", code, out.Err.Message, p)
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// healthy checks that the engine still serves after a hostile case.
func (s *suite) healthy(t testing.TB) {
	t.Helper()
	wantOK(t, run(t, s.health, inv("ping")), "ping")
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
