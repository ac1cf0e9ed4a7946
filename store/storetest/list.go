package storetest

// Listing tasks: filters and paging.

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/chimera-fabric/fabric/protocol"
	"github.com/chimera-fabric/fabric/store"
)

func testListTasks(t *testing.T, s store.Store) {
	if got, next, err := s.ListTasks(ctx, store.TaskFilter{}); err != nil || len(got) != 0 || next != "" {
		t.Fatalf("ListTasks of an empty store = %v %q %v", ids(got), next, err)
	}
	for i := 1; i <= 12; i++ {
		agent := "a"
		if i%3 == 0 {
			agent = "b"
		}
		tr := NewTask(fmt.Sprintf("t%02d", i), agent, protocol.Normal)
		tr.CreatedAt = at(i)
		switch {
		case i%4 == 0:
			tr.Labels = map[string]string{"env": "prod"}
		case i%4 == 1:
			tr.Labels = map[string]string{"env": "dev", "k": "v=w"}
		}
		create(t, s, tr)
	}
	// t01 and t02 run; t01 succeeds.
	t01, _ := claim(t, s, at(20))
	claim(t, s, at(21))
	t01.State = protocol.StateSucceeded
	update(t, s, t01, protocol.StateRunning)

	list := func(f store.TaskFilter) []string {
		t.Helper()
		got, next, err := s.ListTasks(ctx, f)
		if err != nil {
			t.Fatalf("ListTasks(%+v): %v", f, err)
		}
		if next != "" {
			t.Fatalf("ListTasks(%+v): next cursor %q, want none", f, next)
		}
		return ids(got)
	}
	for _, c := range []struct {
		f    store.TaskFilter
		want []string
	}{
		{store.TaskFilter{}, []string{"t12", "t11", "t10", "t09", "t08", "t07", "t06", "t05", "t04", "t03", "t02", "t01"}},
		{store.TaskFilter{State: protocol.StateQueued}, []string{"t12", "t11", "t10", "t09", "t08", "t07", "t06", "t05", "t04", "t03"}},
		{store.TaskFilter{State: protocol.StateRunning}, []string{"t02"}},
		{store.TaskFilter{State: protocol.StateSucceeded}, []string{"t01"}},
		{store.TaskFilter{State: protocol.StateFailed}, nil},
		{store.TaskFilter{Agent: "b"}, []string{"t12", "t09", "t06", "t03"}},
		{store.TaskFilter{Agent: "none"}, nil},
		{store.TaskFilter{Label: "env"}, []string{"t12", "t09", "t08", "t05", "t04", "t01"}},
		{store.TaskFilter{Label: "env=prod"}, []string{"t12", "t08", "t04"}},
		{store.TaskFilter{Label: "env=dev", State: protocol.StateQueued}, []string{"t09", "t05"}},
		{store.TaskFilter{Label: "k=v=w"}, []string{"t09", "t05", "t01"}},
		{store.TaskFilter{Label: "env="}, nil},
		{store.TaskFilter{Label: "nolabel"}, nil},
		{store.TaskFilter{Agent: "b", Label: "env=prod"}, []string{"t12"}},
	} {
		if got := list(c.f); !slices.Equal(got, c.want) {
			t.Errorf("ListTasks(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
	got, _, _ := s.ListTasks(ctx, store.TaskFilter{State: protocol.StateSucceeded})
	if len(got) == 1 {
		same(t, "listed record", got[0], get(t, s, "t01"))
	}

	for _, f := range []store.TaskFilter{
		{Cursor: "garbage"},
		{Cursor: "q1.-5"},
		{Label: "=x"},
		{State: "sleeping"},
	} {
		if _, _, err := s.ListTasks(ctx, f); !errors.Is(err, protocol.ErrInvalidParams) {
			t.Errorf("ListTasks(%+v): err = %v, want invalid params", f, err)
		}
	}
	// The limit defaults and is capped.
	if got, next, _ := s.ListTasks(ctx, store.TaskFilter{Limit: -1}); len(got) != 12 || next != "" {
		t.Errorf("ListTasks(limit -1): %d tasks, next %q; want the default limit", len(got), next)
	}
}

func testListPaging(t *testing.T, s store.Store) {
	n := 0
	add := func(k int) {
		for i := 0; i < k; i++ {
			n++
			tr := NewTask(fmt.Sprintf("t%03d", n), "echo", protocol.Normal)
			if n%2 == 0 {
				tr.Labels = map[string]string{"even": "1"}
			}
			create(t, s, tr)
		}
	}
	for _, f := range []store.TaskFilter{{Limit: 7}, {Limit: 3, Label: "even"}, {Limit: 1}} {
		add(25)
		before := map[string]bool{}
		all, _, _ := s.ListTasks(ctx, store.TaskFilter{Label: f.Label, Limit: protocol.MaxListLimit})
		for _, tr := range all {
			before[tr.TaskID] = true
		}
		seen := map[string]bool{}
		var lastSeq int64
		for page := 0; ; page++ {
			got, next, err := s.ListTasks(ctx, f)
			if err != nil {
				t.Fatalf("ListTasks page %d: %v", page, err)
			}
			if len(got) > f.Limit {
				t.Fatalf("page %d has %d tasks, over the limit %d", page, len(got), f.Limit)
			}
			for _, tr := range got {
				if seen[tr.TaskID] {
					t.Fatalf("task %s listed twice", tr.TaskID)
				}
				if page > 0 && !before[tr.TaskID] {
					t.Fatalf("task %s, added after the first page, appears on page %d", tr.TaskID, page)
				}
				if lastSeq != 0 && tr.QueueSeq >= lastSeq {
					t.Fatalf("not newest first: QueueSeq %d after %d", tr.QueueSeq, lastSeq)
				}
				lastSeq = tr.QueueSeq
				seen[tr.TaskID] = true
			}
			if next == "" {
				break
			}
			if len(got) != f.Limit {
				t.Fatalf("page %d has %d tasks and a next cursor; want full pages before the last", page, len(got))
			}
			f.Cursor = next
			add(2) // tasks arriving meanwhile go to the top, not into later pages
		}
		for id := range before {
			if !seen[id] {
				t.Fatalf("filter %+v: task %s skipped by paging", f, id)
			}
		}
	}
}
