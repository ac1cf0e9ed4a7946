package store

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chimera-fabric/fabric/protocol"
)

// removeEvents leaves exactly the events whose seqs were not named, in
// order, whatever the names: a prefix, scattered seqs, seqs not stored,
// all of them.
func TestRemoveEvents(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 2000 {
		n := rng.IntN(40)
		var events []protocol.TaskEvent
		seq := int64(0)
		for range n {
			seq += 1 + int64(rng.IntN(3)) // gaps: seqs already pruned
			events = append(events, protocol.TaskEvent{Seq: seq, TaskID: "t"})
		}
		var seqs []int64
		drop := map[int64]bool{}
		prefix := rng.IntN(3) == 0
		for s := int64(1); s <= seq+2; s++ {
			if (prefix && s <= seq/2) || (!prefix && rng.IntN(3) == 0) {
				seqs = append(seqs, s)
				drop[s] = true
			}
		}
		if len(seqs) == 0 {
			continue
		}
		var want []int64
		for _, ev := range events {
			if !drop[ev.Seq] {
				want = append(want, ev.Seq)
			}
		}
		backing := events
		got := removeEvents(events, seqs)
		var gotSeqs []int64
		for _, ev := range got {
			gotSeqs = append(gotSeqs, ev.Seq)
		}
		if !slices.Equal(gotSeqs, want) {
			t.Fatalf("round %d: events %v, remove %v: got %v, want %v", round, events, seqs, gotSeqs, want)
		}
		for i := range len(backing) - len(got) {
			if backing[i] != (protocol.TaskEvent{}) {
				t.Fatalf("round %d: slot %d left behind holds %+v", round, i, backing[i])
			}
		}
	}
}
