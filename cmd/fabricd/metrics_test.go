package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/chimera-fabric/fabric/internal/client"
	"github.com/chimera-fabric/fabric/internal/fabricdtest"
	"github.com/chimera-fabric/fabric/protocol"
)

// families is one scrape of /metrics, parsed.
type families map[string]*dto.MetricFamily

// scrape GETs /metrics (with the bearer token when not empty) and parses it
// with the Prometheus text parser.
func scrape(t testing.TB, addr, token string) families {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics with the Prometheus text parser: %v", err)
	}
	return fams
}

// fabricSeries lists the fabric_* names internal/metrics defines, read from
// its source so that a series added there is checked here too.
func fabricSeries(t testing.TB) []string {
	t.Helper()
	src, err := os.ReadFile("../../internal/metrics/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(fabric_[a-z0-9_]+)"`).FindAllStringSubmatch(string(src), -1) {
		seen[m[1]] = true
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) < 10 {
		t.Fatalf("found only %d fabric_* names in internal/metrics/metrics.go: %v", len(names), names)
	}
	return names
}

// labelsOf renders a metric's labels as name=value,... sorted.
func labelsOf(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		kv = append(kv, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// values maps each series of a counter or gauge family, by its labels
// ("agent=echo,priority=normal"), to its value.
func (f families) values(name string) map[string]float64 {
	out := map[string]float64{}
	fam := f[name]
	if fam == nil {
		return nil
	}
	for _, m := range fam.GetMetric() {
		switch {
		case m.Counter != nil:
			out[labelsOf(m)] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			out[labelsOf(m)] = m.GetGauge().GetValue()
		case m.Untyped != nil:
			out[labelsOf(m)] = m.GetUntyped().GetValue()
		}
	}
	return out
}

// histograms maps each series of a histogram family, by its labels, to its
// sample count and sum.
func (f families) histograms(name string) map[string][2]float64 {
	fam := f[name]
	if fam == nil {
		return nil
	}
	out := map[string][2]float64{}
	for _, m := range fam.GetMetric() {
		if h := m.GetHistogram(); h != nil {
			out[labelsOf(m)] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
		}
	}
	return out
}

// wantValues checks that a family holds exactly the series in want.
func wantValues(t *testing.T, f families, name string, want map[string]float64) {
	t.Helper()
	got := f.values(name)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", name, got, want)
	}
}

// wantCounts checks that a histogram family holds exactly the series in
// want, each with that many samples.
func wantCounts(t *testing.T, f families, name string, want map[string]float64) {
	t.Helper()
	got := map[string]float64{}
	for k, v := range f.histograms(name) {
		got[k] = v[0]
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s sample counts:\n got %v\nwant %v", name, got, want)
	}
}

func submitTask(t *testing.T, c *client.Client, params map[string]any) string {
	t.Helper()
	var r protocol.SubmitResult
	call(t, c, "task.submit", params, &r)
	return r.TaskID
}

func waitTask(t *testing.T, c *client.Client, id string) protocol.Task {
	t.Helper()
	var task protocol.Task
	call(t, c, "task.wait", map[string]any{"task_id": id, "timeout_ms": 60_000}, &task)
	if !task.State.Terminal() {
		t.Fatalf("task %s still %s after a minute", id, task.State)
	}
	return task
}

// TestMetrics runs tasks with known outcomes through the real fabricd, then
// scrapes /metrics and checks every fabric_* series against what was run,
// and the Go runtime and process series beside them.
func TestMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	// A durable store, so that store commits happen.
	s := fabricdtest.Start(t, "--data", t.TempDir(), "--workers", "2")
	c := dial(t, s)
	register(t, c, "echo", "echo")
	register(t, c, "agent_error", "agent_error")
	register(t, c, "loop", "loop")

	// 3 successes (2 normal, 1 high), a failure after a retry (2 attempts),
	// a timeout without retries.
	var ids []string
	ids = append(ids, submitTask(t, c, map[string]any{"agent": "echo", "input": 1}))
	ids = append(ids, submitTask(t, c, map[string]any{"agent": "echo", "input": 2}))
	ids = append(ids, submitTask(t, c, map[string]any{"agent": "echo", "input": 3, "priority": "high"}))
	ids = append(ids, submitTask(t, c, map[string]any{"agent": "agent_error", "max_retries": 1, "backoff": map[string]any{"initial_ms": 10}}))
	ids = append(ids, submitTask(t, c, map[string]any{"agent": "loop", "timeout_ms": 200, "max_retries": 0}))
	want := []string{"succeeded", "succeeded", "succeeded", "failed agent_error", "failed timeout"}
	for i, id := range ids {
		task := waitTask(t, c, id)
		got := string(task.State)
		if task.Error != nil {
			got += " " + task.Error.Code
		}
		if got != want[i] {
			t.Fatalf("task %d: %s, want %s", i, got, want[i])
		}
	}
	// One request that fails: a code other than 0 in fabric_rpc_requests_total.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Call(ctx, "agent.get", map[string]any{"name": "missing"}, nil); err == nil {
		t.Fatal("agent.get of a missing agent succeeded")
	}
	// Each request is counted before its answer is sent.
	f := scrape(t, s.Addr, "")

	t.Run("every series is exported", func(t *testing.T) {
		for _, name := range fabricSeries(t) {
			if f[name] == nil {
				t.Errorf("%s is defined in internal/metrics but absent from /metrics", name)
			}
		}
		for _, name := range []string{"go_goroutines", "go_threads", "go_memstats_alloc_bytes", "go_gc_duration_seconds", "go_info",
			"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds", "process_start_time_seconds"} {
			if f[name] == nil {
				t.Errorf("runtime series %s is absent from /metrics", name)
			}
		}
	})

	t.Run("tasks", func(t *testing.T) {
		wantValues(t, f, "fabric_tasks_submitted_total", map[string]float64{
			"agent=echo,priority=normal": 2, "agent=echo,priority=high": 1,
			"agent=agent_error,priority=normal": 1, "agent=loop,priority=normal": 1,
		})
		wantValues(t, f, "fabric_tasks_finished_total", map[string]float64{
			"agent=echo,priority=normal,state=succeeded": 2, "agent=echo,priority=high,state=succeeded": 1,
			"agent=agent_error,priority=normal,state=failed": 1, "agent=loop,priority=normal,state=failed": 1,
		})
		wantValues(t, f, "fabric_task_attempts_total", map[string]float64{
			"agent=echo,code=ok": 3, "agent=agent_error,code=agent_error": 2, "agent=loop,code=timeout": 1,
		})
		wantCounts(t, f, "fabric_task_duration_seconds", map[string]float64{"agent=echo": 3, "agent=agent_error": 2, "agent=loop": 1})
		// The attempt that timed out ran at least its timeout.
		if loop := f.histograms("fabric_task_duration_seconds")["agent=loop"]; loop[1] < 0.2 {
			t.Errorf("fabric_task_duration_seconds{agent=loop} sum %gs, want >= the 0.2s timeout", loop[1])
		}
		// First attempts only: the retry does not wait in the queue again.
		wantCounts(t, f, "fabric_task_queue_wait_seconds", map[string]float64{"priority=normal": 4, "priority=high": 1})
	})

	t.Run("scheduler gauges at rest", func(t *testing.T) {
		wantValues(t, f, "fabric_queue_depth", map[string]float64{
			"priority=critical": 0, "priority=high": 0, "priority=normal": 0, "priority=low": 0, "priority=background": 0,
		})
		wantValues(t, f, "fabric_tasks_running", map[string]float64{"": 0})
		wantValues(t, f, "fabric_workers", map[string]float64{"": 2})
		wantValues(t, f, "fabric_ready", map[string]float64{"": 1})
	})

	t.Run("agents", func(t *testing.T) {
		wantCounts(t, f, "fabric_agent_compile_seconds", map[string]float64{"": 3})
		got := f.histograms("fabric_agent_instantiate_seconds")[""][0]
		if got != 6 {
			t.Errorf("fabric_agent_instantiate_seconds: %g samples, want 6 (one sandbox per attempt)", got)
		}
	})

	t.Run("rpc", func(t *testing.T) {
		wantValues(t, f, "fabric_rpc_requests_total", map[string]float64{
			"code=0,method=agent.register": 3, "code=0,method=task.submit": 5, "code=0,method=task.wait": 5,
			"code=-32001,method=agent.get": 1,
		})
		wantCounts(t, f, "fabric_rpc_request_duration_seconds", map[string]float64{
			"method=agent.register": 3, "method=task.submit": 5, "method=task.wait": 5, "method=agent.get": 1,
		})
		// task.wait waited for the 200ms timeout at least.
		if w := f.histograms("fabric_rpc_request_duration_seconds")["method=task.wait"]; w[1] <= 0 {
			t.Errorf("fabric_rpc_request_duration_seconds{method=task.wait} sum %g, want > 0", w[1])
		}
	})

	t.Run("connections", func(t *testing.T) {
		wantValues(t, f, "fabric_connections_slow_consumer_closed_total", map[string]float64{"": 0})
		wantValues(t, f, "fabric_connections_open", map[string]float64{"transport=websocket": 1})
		second := dial(t, s)
		fabricdtest.WaitFor(t, 10*time.Second, "fabric_connections_open 2 with a second client", func() bool {
			return scrape(t, s.Addr, "").values("fabric_connections_open")["transport=websocket"] == 2
		})
		second.Close()
		fabricdtest.WaitFor(t, 10*time.Second, "fabric_connections_open back to 1 once the second client closed", func() bool {
			return scrape(t, s.Addr, "").values("fabric_connections_open")["transport=websocket"] == 1
		})
	})

	t.Run("store", func(t *testing.T) {
		commits := f.histograms("fabric_store_commit_seconds")[""]
		writes := f.histograms("fabric_store_commit_writes")[""]
		if commits[0] == 0 {
			t.Fatal("fabric_store_commit_seconds has no samples after tasks ran on a durable store")
		}
		if writes[0] != commits[0] {
			t.Errorf("fabric_store_commit_writes has %g samples, fabric_store_commit_seconds %g: want one of each per commit", writes[0], commits[0])
		}
		// At least 3 agents and 5 tasks were written, each commit holding one write or more.
		if writes[1] < 8 || writes[1] < writes[0] {
			t.Errorf("fabric_store_commit_writes sum %g over %g commits, want >= 8 and >= the commits", writes[1], writes[0])
		}
	})

	t.Run("runtime", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_threads", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"} {
			if v := f.values(name)[""]; !(v > 0) {
				t.Errorf("%s = %g, want > 0", name, v)
			}
		}
		start := f.values("process_start_time_seconds")[""]
		if now := float64(time.Now().Unix()); start <= 0 || start > now+1 || start < now-3600 {
			t.Errorf("process_start_time_seconds %g, want within the last hour (now %g)", start, now)
		}
		if v := f.values("process_cpu_seconds_total")[""]; !(v > 0) {
			t.Errorf("process_cpu_seconds_total %g, want > 0 after running tasks", v)
		}
	})

	// Under load: two loops take both workers, one more task waits.
	t.Run("scheduler gauges under load", func(t *testing.T) {
		busy := []string{
			submitTask(t, c, map[string]any{"agent": "loop", "timeout_ms": 120_000, "max_retries": 0}),
			submitTask(t, c, map[string]any{"agent": "loop", "timeout_ms": 120_000, "max_retries": 0}),
		}
		waiting := submitTask(t, c, map[string]any{"agent": "echo", "input": 4, "priority": "low"})
		var g families
		fabricdtest.WaitFor(t, 30*time.Second, "two tasks running", func() bool {
			g = scrape(t, s.Addr, "")
			return g.values("fabric_tasks_running")[""] == 2
		})
		if d := g.values("fabric_queue_depth")["priority=low"]; d != 1 {
			t.Errorf("fabric_queue_depth{priority=low} %g with both workers busy, want 1", d)
		}
		for _, id := range append(busy, waiting) {
			call(t, c, "task.cancel", map[string]any{"task_id": id}, nil)
		}
		g = scrape(t, s.Addr, "")
		wantValues(t, g, "fabric_tasks_running", map[string]float64{"": 0})
		if d := g.values("fabric_queue_depth")["priority=low"]; d != 0 {
			t.Errorf("fabric_queue_depth{priority=low} %g after the cancels, want 0", d)
		}
		if n := g.values("fabric_tasks_finished_total")["agent=loop,priority=normal,state=cancelled"]; n != 2 {
			t.Errorf(`fabric_tasks_finished_total{agent="loop",state="cancelled"} %g, want 2`, n)
		}
	})
}

// TestMetricsNeedTheToken: with --token, /metrics is behind it like /rpc,
// so Prometheus must send it (docs/operations.md says how).
func TestMetricsNeedTheToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts fabricd")
	}
	s := fabricdtest.Start(t, "--data", ":memory:", "--token", "s3cret")
	resp, err := http.Get("http://" + s.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token: %d, want 401", resp.StatusCode)
	}
	if f := scrape(t, s.Addr, "s3cret"); f["fabric_ready"] == nil {
		t.Error("GET /metrics with the token: no fabric_ready")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + s.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s without the token: %d, want 200 (probes need no token)", path, resp.StatusCode)
		}
	}
}
