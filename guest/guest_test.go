//go:build !wasip1

package guest

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
)

// nativeRun points the native host at buffers holding in, resets the cached
// input, and replaces exit, for one test.
type nativeRun struct {
	stdout, stderr bytes.Buffer
	exits          []int
}

func setup(t *testing.T, in string) *nativeRun {
	t.Helper()
	r := &nativeRun{}
	native.stdin, native.stdout, native.stderr = strings.NewReader(in), &r.stdout, &r.stderr
	inputOnce, input = sync.Once{}, nil
	exit = func(code int) { r.exits = append(r.exits, code) }
	t.Cleanup(func() {
		native.stdin, native.stdout, native.stderr = nil, nil, nil
		inputOnce, input = sync.Once{}, nil
		exit = nil
	})
	return r
}

func TestRunSuccess(t *testing.T) {
	r := setup(t, "hello")
	Run(func(in []byte) ([]byte, error) { return bytes.ToUpper(in), nil })
	if got := r.stdout.String(); got != "HELLO" {
		t.Errorf("stdout = %q, want %q", got, "HELLO")
	}
	if r.stderr.Len() != 0 {
		t.Errorf("stderr = %q, want nothing", r.stderr.String())
	}
	if len(r.exits) != 0 {
		t.Errorf("exit called with %v, want no call", r.exits)
	}
}

func TestRunError(t *testing.T) {
	r := setup(t, "x")
	Run(func(in []byte) ([]byte, error) {
		Output([]byte("partial"))
		return []byte("not written"), errors.New("bad input: want y")
	})
	if got := r.stdout.String(); got != "partial" {
		t.Errorf("stdout = %q, want %q (output before the failure is kept)", got, "partial")
	}
	if got, want := r.stderr.String(), "fail: bad input: want y\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	if len(r.exits) != 1 || r.exits[0] != 1 {
		t.Errorf("exit calls = %v, want [1]", r.exits)
	}
}

func TestHandlePanic(t *testing.T) {
	r := setup(t, "")
	status := Handle(func([]byte) ([]byte, error) { panic("boom") })
	if status != 1 {
		t.Errorf("Handle = %d, want 1", status)
	}
	got := r.stderr.String()
	if !strings.HasPrefix(got, "error: panic: boom\n\tgoroutine ") {
		t.Errorf("stderr should start with the panic logged with its stack; got %q", got)
	}
	if !strings.HasSuffix(got, "\nfail: panic: boom\n") {
		t.Errorf("stderr should end with the failure; got %q", got)
	}
}

func TestInputReadOnce(t *testing.T) {
	setup(t, "abc")
	a, b := Input(), Input()
	if string(a) != "abc" || string(b) != "abc" {
		t.Fatalf("Input() = %q then %q, want \"abc\" twice", a, b)
	}
	if &a[0] != &b[0] {
		t.Error("Input returned two different slices; want the cached one")
	}
}

func TestEmptyInputIsNotNil(t *testing.T) {
	setup(t, "")
	if in := Input(); in == nil || len(in) != 0 {
		t.Errorf("Input() = %#v, want an empty non-nil slice", in)
	}
}

func TestStderrLines(t *testing.T) {
	tests := []struct {
		name string
		call func()
		want string
	}{
		{"debug", func() { Log(Debug, "d") }, "debug: d\n"},
		{"info", func() { Log(Info, "i") }, "info: i\n"},
		{"warn", func() { Log(Warn, "w") }, "warn: w\n"},
		{"error", func() { Log(Error, "e") }, "error: e\n"},
		{"level above range", func() { Log(Level(9), "x") }, "error: x\n"},
		{"level below range", func() { Log(Level(-1), "x") }, "error: x\n"},
		{"logf", func() { Logf(Info, "%d items", 3) }, "info: 3 items\n"},
		{"multi-line", func() { Log(Info, "a\nb\n") }, "info: a\n\tb\n"},
		{"progress half", func() { Progress(0.5) }, "progress: 0.500\n"},
		{"progress rounds", func() { Progress(0.12345) }, "progress: 0.123\n"},
		{"progress below 0", func() { Progress(-3) }, "progress: 0.000\n"},
		{"progress above 1", func() { Progress(7) }, "progress: 1.000\n"},
		{"progress NaN", func() { Progress(math.NaN()) }, ""},
		{"kpi", func() { KPI("primes", 78498) }, "kpi: primes=78498\n"},
		{"kpi fraction", func() { KPI("ratio", 0.25) }, "kpi: ratio=0.25\n"},
		{"kpi NaN", func() { KPI("x", math.NaN()) }, ""},
		{"kpi Inf", func() { KPI("x", math.Inf(-1)) }, ""},
		{"fail", func() { Fail(errors.New("no")) }, "fail: no\n"},
		{"fail nil", func() { Fail(nil) }, "fail: guest.Fail(nil)\n"},
		{"fail empty", func() { Fail(errors.New("")) }, "fail: agent failed with an empty error message\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := setup(t, "")
			tt.call()
			if got := r.stderr.String(); got != tt.want {
				t.Errorf("stderr = %q, want %q", got, tt.want)
			}
			if r.stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", r.stdout.String())
			}
		})
	}
}

func TestPermille(t *testing.T) {
	for f, want := range map[float64]int32{0: 0, 0.0004: 0, 0.0005: 1, 0.999: 999, 0.9996: 1000, 1: 1000, -0.1: 0, 1.1: 1000} {
		if got := permille(f); got != want {
			t.Errorf("permille(%v) = %d, want %d", f, got, want)
		}
	}
}

func TestLevelString(t *testing.T) {
	for l, want := range map[Level]string{Debug: "debug", Info: "info", Warn: "warn", Error: "error", 7: "Level(7)"} {
		if got := l.String(); got != want {
			t.Errorf("Level(%d).String() = %q, want %q", int32(l), got, want)
		}
	}
}

func TestOutputAppends(t *testing.T) {
	r := setup(t, "")
	Output([]byte("a"))
	Output(nil)
	Output([]byte("bc"))
	if got := r.stdout.String(); got != "abc" {
		t.Errorf("stdout = %q, want %q", got, "abc")
	}
}

func TestConcurrentCalls(t *testing.T) {
	r := setup(t, "")
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Go(func() {
			for j := 0; j < 50; j++ {
				Log(Info, "line")
				Output([]byte("x"))
			}
		})
	}
	wg.Wait()
	if got := strings.Count(r.stderr.String(), "info: line\n"); got != 400 {
		t.Errorf("stderr holds %d whole log lines, want 400", got)
	}
	if r.stdout.Len() != 400 {
		t.Errorf("stdout holds %d bytes, want 400", r.stdout.Len())
	}
}
