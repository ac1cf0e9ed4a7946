// Package metrics holds Fabric's Prometheus metrics: one registry with the
// fabric_* series every layer records into, plus the Go runtime and process
// collectors. A nil *Metrics records nothing, so packages can be used
// without it (tests, embedding).
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the set of fabric_* series.
type Metrics struct {
	reg *prometheus.Registry

	tasksSubmitted *prometheus.CounterVec   // priority, agent
	tasksFinished  *prometheus.CounterVec   // priority, agent, state
	taskDuration   *prometheus.HistogramVec // agent
	queueWait      *prometheus.HistogramVec // priority
	attempts       *prometheus.CounterVec   // agent, outcome code ("ok" on success)
	agentCompile   prometheus.Histogram
	instantiate    prometheus.Histogram
	rpcRequests    *prometheus.CounterVec   // method, code
	rpcLatency     *prometheus.HistogramVec // method
	connections    *prometheus.GaugeVec     // transport
	slowConsumers  prometheus.Counter
	storeCommit    prometheus.Histogram
	storeBatch     prometheus.Histogram
}

// Gauges are read when /metrics is scraped.
type Gauges struct {
	QueueDepth func() map[string]int // by priority
	Running    func() int
	Workers    func() int
	Ready      func() bool
}

var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// New returns the metrics, registered with a fresh registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.tasksSubmitted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fabric_tasks_submitted_total", Help: "Tasks accepted by task.submit.",
	}, []string{"priority", "agent"})
	m.tasksFinished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fabric_tasks_finished_total", Help: "Tasks that reached a terminal state.",
	}, []string{"priority", "agent", "state"})
	m.taskDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fabric_task_duration_seconds", Help: "Wall-clock time of one attempt in its sandbox.", Buckets: latencyBuckets,
	}, []string{"agent"})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fabric_task_queue_wait_seconds", Help: "Time from acceptance to the first attempt's start.", Buckets: latencyBuckets,
	}, []string{"priority"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fabric_task_attempts_total", Help: "Attempts run, by outcome code (ok on success).",
	}, []string{"agent", "code"})
	m.agentCompile = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fabric_agent_compile_seconds", Help: "Time to validate and compile an agent's module.", Buckets: latencyBuckets,
	})
	m.instantiate = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fabric_agent_instantiate_seconds", Help: "Time to prepare a task's sandbox instance: a new instance, or one reset in place to its initial state; a reused instance (reuse_instances) is not counted.", Buckets: latencyBuckets,
	})
	m.rpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fabric_rpc_requests_total", Help: "JSON-RPC requests answered, by method and code (0 on success).",
	}, []string{"method", "code"})
	m.rpcLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fabric_rpc_request_duration_seconds", Help: "Time to answer a JSON-RPC request.", Buckets: latencyBuckets,
	}, []string{"method"})
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fabric_connections_open", Help: "Open client connections.",
	}, []string{"transport"})
	m.slowConsumers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "fabric_connections_slow_consumer_closed_total", Help: "Connections closed because their outbound queue filled.",
	})
	m.storeCommit = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fabric_store_commit_seconds", Help: "Time of one store commit (a group of writes).", Buckets: latencyBuckets,
	})
	m.storeBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fabric_store_commit_writes", Help: "Writes sharing one store commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	})
	m.reg.MustRegister(m.tasksSubmitted, m.tasksFinished, m.taskDuration, m.queueWait, m.attempts,
		m.agentCompile, m.instantiate, m.rpcRequests, m.rpcLatency, m.connections, m.slowConsumers,
		m.storeCommit, m.storeBatch,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch registers gauges read at scrape time.
func (m *Metrics) Watch(g Gauges) {
	if m == nil {
		return
	}
	if g.QueueDepth != nil {
		m.reg.MustRegister(&depthCollector{f: g.QueueDepth, desc: prometheus.NewDesc(
			"fabric_queue_depth", "Tasks queued or waiting to retry, by priority.", []string{"priority"}, nil)})
	}
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	if g.Running != nil {
		gauge("fabric_tasks_running", "Tasks running now.", func() float64 { return float64(g.Running()) })
	}
	if g.Workers != nil {
		gauge("fabric_workers", "Workers in the pool.", func() float64 { return float64(g.Workers()) })
	}
	if g.Ready != nil {
		gauge("fabric_ready", "1 when fabricd takes new work, 0 while starting or draining.", func() float64 {
			if g.Ready() {
				return 1
			}
			return 0
		})
	}
}

type depthCollector struct {
	f    func() map[string]int
	desc *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	for p, n := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), p)
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry behind Handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) TaskSubmitted(priority, agent string) {
	if m != nil {
		m.tasksSubmitted.WithLabelValues(priority, agent).Inc()
	}
}

func (m *Metrics) TaskFinished(priority, agent, state string) {
	if m != nil {
		m.tasksFinished.WithLabelValues(priority, agent, state).Inc()
	}
}

// Attempt records one attempt: its sandbox time and outcome code ("" = ok).
func (m *Metrics) Attempt(agent, code string, d time.Duration) {
	if m == nil {
		return
	}
	if code == "" {
		code = "ok"
	}
	m.attempts.WithLabelValues(agent, code).Inc()
	m.taskDuration.WithLabelValues(agent).Observe(d.Seconds())
}

func (m *Metrics) QueueWait(priority string, d time.Duration) {
	if m != nil {
		m.queueWait.WithLabelValues(priority).Observe(d.Seconds())
	}
}

func (m *Metrics) Compiled(d time.Duration) {
	if m != nil {
		m.agentCompile.Observe(d.Seconds())
	}
}

func (m *Metrics) Instantiated(d time.Duration) {
	if m != nil {
		m.instantiate.Observe(d.Seconds())
	}
}

// RPC records one answered request; code is 0 on success.
func (m *Metrics) RPC(method string, code int64, d time.Duration) {
	if m == nil {
		return
	}
	m.rpcRequests.WithLabelValues(method, strconv.FormatInt(code, 10)).Inc()
	m.rpcLatency.WithLabelValues(method).Observe(d.Seconds())
}

// ConnOpened and ConnClosed track open connections by transport.
func (m *Metrics) ConnOpened(transport string) {
	if m != nil {
		m.connections.WithLabelValues(transport).Inc()
	}
}

func (m *Metrics) ConnClosed(transport string) {
	if m != nil {
		m.connections.WithLabelValues(transport).Dec()
	}
}

func (m *Metrics) SlowConsumer() {
	if m != nil {
		m.slowConsumers.Inc()
	}
}

// StoreCommit records one commit of n writes.
func (m *Metrics) StoreCommit(d time.Duration, n int) {
	if m != nil {
		m.storeCommit.Observe(d.Seconds())
		m.storeBatch.Observe(float64(n))
	}
}
