package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records latencies in log-linear buckets: 64 sub-buckets per
// power of two, so a percentile read from it is within 1/64 (1.6%) of the
// true value, in constant memory (18 KiB) whatever the number of samples.
// Record is safe for concurrent use and takes no lock: a load generator's
// recording must not serialise its workers.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Int64 // ns
	max    atomic.Int64 // ns
}

const (
	subBits     = 6
	subBuckets  = 1 << subBits // per power of two
	maxExp      = 40           // 2^40 ns is 18 minutes; longer latencies count as that
	histBuckets = (maxExp - subBits + 2) * subBuckets
)

// bucketOf maps a latency in ns to its bucket. Values below 64 ns have a
// bucket each; above, the bucket is the exponent and the next 6 bits.
func bucketOf(ns int64) int {
	if ns < subBuckets {
		if ns < 0 {
			return 0
		}
		return int(ns)
	}
	v := uint64(ns)
	if v >= 1<<maxExp {
		return histBuckets - 1
	}
	shift := bits.Len64(v) - subBits - 1 // v>>shift is in [64, 128)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// bucketRange is the interval [lo, hi) of ns values in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subBuckets {
		return int64(i), int64(i) + 1
	}
	shift := i/subBuckets - 1
	m := int64(i%subBuckets + subBuckets)
	return m << shift, (m + 1) << shift
}

func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// quantile returns the latency below which a fraction q of the samples lie:
// the middle of the bucket holding the ceil(q*n)-th sample, never above the
// maximum recorded.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := lo + (hi-lo)/2
			return time.Duration(min(mid, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Latency holds latency percentiles in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (h *histogram) latency() Latency {
	n := h.n.Load()
	if n == 0 {
		return Latency{}
	}
	return Latency{
		P50:  ms(h.quantile(0.50)),
		P90:  ms(h.quantile(0.90)),
		P99:  ms(h.quantile(0.99)),
		Max:  ms(time.Duration(h.max.Load())),
		Mean: ms(time.Duration(h.sum.Load() / int64(n))),
	}
}
